"""Counts per key for many keys that mostly count one, in little memory.

A baseline's verified counts (services/verified_counts.py) hold every key with a success in
the window, yet a limit only ever reads keys above a threshold of at least one. Pumping and
random sign-ups make most keys count exactly one (a range key per success), and a string key
with its dictionary slot costs ~110 bytes: ~20 MB for the 180,000 successes of a 10-minute
soak, kept for 14 days. So a key counting one is kept as its 8-byte hash in a sorted array,
and only keys counting two or more as strings. The hash is Python's own, salted per process
(PYTHONHASHSEED), so numbers chosen by an attacker cannot be made to collide; two keys of a
window colliding by chance (~n²/2⁶⁵: 3·10⁻⁸ for a million keys) would count as one.

Changes are gathered per key and applied at once (`apply`): the array is rebuilt by one
merge per refresh, not shifted per key.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Mapping
from heapq import merge


class KeyTally:
    """Key -> a positive count; keys counting one kept as hashes (`above` needs >= 1)."""

    __slots__ = ("_many", "_ones")

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._many: dict[str, int] = {}
        self._ones = array("q")
        if counts:
            self.apply(counts)

    def __len__(self) -> int:
        return len(self._many) + len(self._ones)

    def count(self, key: str) -> int:
        many = self._many.get(key)
        if many is not None:
            return many
        return 1 if self._has_one(hash(key)) else 0

    def apply(self, deltas: Mapping[str, int]) -> None:
        """Add each key's delta (negative: successes that left); a count at or below zero
        drops the key."""
        added: list[int] = []
        dropped: set[int] = set()
        for key, delta in deltas.items():
            if not delta:
                continue
            digest = hash(key)
            old = self._many.pop(key, None)
            if old is None and self._has_one(digest):
                old = 1
                dropped.add(digest)
            new = (old or 0) + delta
            if new >= 2:
                self._many[key] = new
            elif new == 1:
                if digest in dropped:
                    dropped.discard(digest)  # it stays where it is
                else:
                    added.append(digest)
        if added or dropped:
            kept = (h for h in self._ones if h not in dropped) if dropped else iter(self._ones)
            self._ones = array("q", merge(kept, sorted(set(added))))

    def above(self, threshold: float) -> dict[str, int]:
        """The keys counting more than `threshold` (>= 1: the keys counting one are hashes)."""
        if threshold < 1:
            raise ValueError("a KeyTally lists only keys counting two or more")
        return {key: n for key, n in self._many.items() if n > threshold}

    def _has_one(self, digest: int) -> bool:
        ones = self._ones
        at = bisect_left(ones, digest)
        return at < len(ones) and ones[at] == digest
