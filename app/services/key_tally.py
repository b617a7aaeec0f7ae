"""Counts per key for many keys that mostly count one, in little memory.

A baseline's verified counts (services/verified_counts.py) hold every key with a success in
the window, yet a limit only ever reads keys above a threshold of at least one. Pumping and
random sign-ups make most keys count exactly one (a range key per success), and a string key
with its dictionary slot costs ~110 bytes: ~20 MB for the 180,000 successes of a 10-minute
soak, kept for 14 days. So a key counting one is kept as its 8-byte hash in a sorted array,
and only keys counting two or more as strings. The hash is Python's own, salted per process
(PYTHONHASHSEED), so numbers chosen by an attacker cannot be made to collide; two keys of a
window colliding by chance (~n²/2⁶⁵: 3·10⁻⁸ for a million keys) would count as one.

Changes are gathered per key and applied at once (`apply`): the array is rebuilt once per
call, copied between the edits by slices (memcpy), not item by item: rebuilt by a
`heapq.merge` of every hash, the refresh five minutes into a soak at 300/s held the event
loop ~25 ms in one step, growing with the keys kept (bench/loop_watch.py).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Mapping


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
        ones = self._ones
        added: dict[int, int] = {}  # hash -> its position in `ones` (bisect_left)
        dropped: dict[int, int] = {}
        for key, delta in deltas.items():
            if not delta:
                continue
            digest = hash(key)
            at = bisect_left(ones, digest)
            old = self._many.pop(key, None)
            one = old is None and at < len(ones) and ones[at] == digest
            new = (old or 0) + delta + one
            if new >= 2:
                self._many[key] = new
            if one and new != 1:
                dropped[digest] = at
            elif new == 1 and not one:
                added[digest] = at
        if added or dropped:
            self._ones = _spliced(ones, added, dropped)

    def above(self, threshold: float) -> dict[str, int]:
        """The keys counting more than `threshold` (>= 1: the keys counting one are hashes)."""
        if threshold < 1:
            raise ValueError("a KeyTally lists only keys counting two or more")
        return {key: n for key, n in self._many.items() if n > threshold}

    def _has_one(self, digest: int) -> bool:
        ones = self._ones
        at = bisect_left(ones, digest)
        return at < len(ones) and ones[at] == digest


def _spliced(ones: array[int], added: dict[int, int], dropped: dict[int, int]) -> array[int]:
    """`ones` (sorted) with the hashes `added` inserted and those `dropped` taken out, each
    at its position (`bisect_left`): the runs between the edits copied whole (no tuple per
    edit: their free list would keep a few hundred kB)."""
    adds, drops = sorted(added), sorted(dropped)  # by hash: by position, too
    out = array("q", bytes(8 * (len(ones) + len(adds) - len(drops))))  # its exact size
    start = written = i = j = 0
    while i < len(adds) or j < len(drops):
        # At one position, the insertions (ascending) come before the drop of the hash there.
        if j == len(drops) or (i < len(adds) and added[adds[i]] <= dropped[drops[j]]):
            at = added[adds[i]]
        else:
            at = dropped[drops[j]]
        out[written : written + at - start] = ones[start:at]
        written += at - start
        if j == len(drops) or (i < len(adds) and added[adds[i]] <= at):
            out[written] = adds[i]
            written, start, i = written + 1, at, i + 1
        else:
            start, j = at + 1, j + 1
    out[written:] = ones[start:]
    return out
