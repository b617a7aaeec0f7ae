"""The counter model laid out for a replay (backtests), in arrays: per counter key its buckets
in time order with one row of integer columns each, and per window it is read over a running
sum and the index of its oldest bucket, advanced as time moves on.

A replay knows up front which windows each kind of key is read over (the candidate's specs),
so a key's windows exist from its first attempt, and a read is a list index, not a query.
Time only moves forward: attempts come in time order (a new bucket is always the newest),
and a success is credited to a bucket a key already has. Settling is immediate (the replay
decides before the next attempt), so nothing is pending between attempts: `ALLOWED` holds
settled allowed attempts only. A test runs one history through this and the memory backend
and compares every read.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

ATTEMPTS, ALLOWED, SPEND, ALLOWED_SPEND, SUCCESSES = range(5)
COLUMNS = 5


@dataclass(frozen=True, slots=True)
class Layout:
    """The windows one kind of counter key is read over: per window, how far its oldest
    bucket lies behind the current one, in seconds (a multiple of the bucket size)."""

    spans: tuple[int, ...]

    @property
    def windows(self) -> int:
        return len(self.spans)


class KeyCounts:
    """One counter key: its buckets (ascending) and their rows; per window the index of its
    oldest bucket still inside and the sum of the rows from there to the newest."""

    __slots__ = ("bucket", "buckets", "current", "heads", "layout", "rows", "sums")

    def __init__(self, layout: Layout, bucket: int) -> None:
        self.layout = layout
        self.bucket = bucket
        self.current = [0, 0, 0, 0, 0]
        self.buckets = [bucket]
        self.rows = [self.current]
        self.heads = [0] * layout.windows
        self.sums = [[0, 0, 0, 0, 0] for _ in layout.spans]

    def roll(self, bucket: int) -> None:
        """Start a newer bucket; each window lets go of the buckets it no longer covers."""
        row = [0] * COLUMNS
        self.bucket, self.current = bucket, row
        buckets, rows = self.buckets, self.rows
        buckets.append(bucket)
        rows.append(row)
        heads, sums = self.heads, self.sums
        for w, span in enumerate(self.layout.spans):
            oldest, head = bucket - span, heads[w]
            if buckets[head] >= oldest:
                continue
            total = sums[w]
            while buckets[head] < oldest:
                a, b, c, d, e = rows[head]
                total[0] -= a
                total[1] -= b
                total[2] -= c
                total[3] -= d
                total[4] -= e
                head += 1
            heads[w] = head

    def count(self, spend: int) -> None:
        """An attempt in the newest bucket (inside every window)."""
        row = self.current
        row[ATTEMPTS] += 1
        row[SPEND] += spend
        for total in self.sums:
            total[ATTEMPTS] += 1
            total[SPEND] += spend

    def allow(self, spend: int) -> None:
        """The attempt in the newest bucket was allowed."""
        row = self.current
        row[ALLOWED] += 1
        row[ALLOWED_SPEND] += spend
        for total in self.sums:
            total[ALLOWED] += 1
            total[ALLOWED_SPEND] += spend

    def add_at(self, bucket: int, column: int, amount: int) -> None:
        """Add to an earlier bucket: to the windows still covering it. A bucket the key no
        longer has (forgotten) is outside every window already."""
        buckets = self.buckets
        at = bisect_left(buckets, bucket)
        if at == len(buckets) or buckets[at] != bucket:
            return
        self.rows[at][column] += amount
        for w, head in enumerate(self.heads):
            if at >= head:
                self.sums[w][column] += amount

    def forget_before(self, bucket: int) -> bool:
        """Drop buckets older than `bucket` no window still covers; False if none is left."""
        keep = min([bisect_left(self.buckets, bucket), *self.heads])
        if keep:
            del self.buckets[:keep]
            del self.rows[:keep]
            self.heads = [head - keep for head in self.heads]
        return self.bucket >= bucket


class ReplayCounters:
    """Every key's counts, and the clock's bucket arithmetic."""

    def __init__(self, bucket_seconds: int) -> None:
        self.size = bucket_seconds
        self.keys: dict[str, KeyCounts] = {}

    def layout(self, windows: tuple[int, ...]) -> Layout:
        """Windows of these lengths in seconds: a window covers the ceil(W / bucket) most
        recent buckets, the current one included."""
        size = self.size
        return Layout(tuple((max(1, math.ceil(w / size)) - 1) * size for w in windows))

    def bucket(self, epoch: float) -> int:
        seconds = int(epoch)
        return seconds - seconds % self.size

    def at(self, key: str, layout: Layout, bucket: int) -> KeyCounts:
        """The key's counts with `bucket` (not older than any it has) as the newest."""
        counts = self.keys.get(key)
        if counts is None:
            counts = self.keys[key] = KeyCounts(layout, bucket)
        elif counts.bucket != bucket:
            counts.roll(bucket)
        return counts

    def forget_before(self, bucket: int) -> None:
        """Drop buckets older than `bucket` (no window may read them any more), and keys left
        with none: a long replay keeps only what its windows can still read."""
        for key in [key for key, counts in self.keys.items() if not counts.forget_before(bucket)]:
            del self.keys[key]
