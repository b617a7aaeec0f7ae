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
from array import array
from bisect import bisect_left
from collections.abc import Hashable
from dataclasses import dataclass, field

ATTEMPTS, ALLOWED, SPEND, ALLOWED_SPEND, SUCCESSES = range(5)
COLUMNS = 5


@dataclass(frozen=True, slots=True)
class Layout:
    """The windows one kind of counter key is read over: per window, how far its oldest
    bucket lies behind the current one, in seconds (a multiple of the bucket size), and
    whether only its successes are read (a verified baseline over 14 days: such a window
    keeps a compact log of the buckets with successes, not whole rows)."""

    spans: tuple[int, ...]
    successes_only: tuple[bool, ...] = ()
    # Derived once: the windows reading whole rows, and those reading only successes.
    full: tuple[int, ...] = field(init=False)
    full_spans: tuple[int, ...] = field(init=False)
    logged: tuple[int, ...] = field(init=False)
    log_spans: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        only = self.successes_only or (False,) * len(self.spans)
        full = tuple(w for w, o in enumerate(only) if not o)
        logged = tuple(w for w, o in enumerate(only) if o)
        object.__setattr__(self, "full", full)
        object.__setattr__(self, "full_spans", tuple(self.spans[w] for w in full))
        object.__setattr__(self, "logged", logged)
        object.__setattr__(self, "log_spans", tuple(self.spans[w] for w in logged))

    @property
    def windows(self) -> int:
        return len(self.spans)


class KeyCounts:
    """One counter key. Windows that read whole rows: its buckets (ascending) and their
    rows, per window the index of its oldest bucket still inside and the sum of the rows
    from there to the newest. Windows that read only successes: the buckets with successes
    and their counts (two integer arrays, 16 bytes a bucket), with a head and a sum each.
    Buckets no window covers are dropped as the key rolls over, once they are half of what
    it holds (a sparse key keeps none; a busy key's long log is not moved on every roll)."""

    __slots__ = (
        "bucket",
        "buckets",
        "current",
        "full_spans",
        "full_sums",
        "heads",
        "log_buckets",
        "log_counts",
        "log_heads",
        "log_spans",
        "log_sums",
        "rows",
        "sums",
    )

    def __init__(self, layout: Layout, bucket: int) -> None:
        self.bucket = bucket
        self.current = [0, 0, 0, 0, 0]
        self.buckets = [bucket]
        self.rows = [self.current]
        self.sums = sums = [[0, 0, 0, 0, 0] for _ in layout.spans]
        self.full_spans = full_spans = layout.full_spans
        self.heads = [0] * len(full_spans)
        self.log_spans = log_spans = layout.log_spans
        if not log_spans:  # most kinds: every window reads whole rows
            self.full_sums = sums
            return
        self.full_sums = [sums[w] for w in layout.full]
        self.log_sums = [sums[w] for w in layout.logged]
        self.log_heads = [0] * len(log_spans)
        self.log_buckets = array("q")
        self.log_counts = array("q")

    def roll(self, bucket: int) -> None:
        """Start a newer bucket; each window lets go of the buckets it no longer covers."""
        row = [0] * COLUMNS
        self.bucket, self.current = bucket, row
        buckets, rows = self.buckets, self.rows
        buckets.append(bucket)
        rows.append(row)
        heads, sums = self.heads, self.full_sums
        for w, span in enumerate(self.full_spans):
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
        keep = min(heads) if heads else len(rows) - 1
        if keep and 2 * keep >= len(rows):  # amortized: a long list is not moved per roll
            del buckets[:keep]
            del rows[:keep]
            self.heads = [head - keep for head in heads]
        if self.log_spans:
            self._roll_log(bucket)

    def _roll_log(self, bucket: int) -> None:
        logged, counts, heads = self.log_buckets, self.log_counts, self.log_heads
        end = len(logged)
        for w, span in enumerate(self.log_spans):
            oldest, head = bucket - span, heads[w]
            if head == end or logged[head] >= oldest:
                continue
            total = self.log_sums[w]
            while head < end and logged[head] < oldest:
                total[SUCCESSES] -= counts[head]
                head += 1
            heads[w] = head
        keep = min(heads)
        if keep and 2 * keep >= end:
            del logged[:keep]
            del counts[:keep]
            self.log_heads = [head - keep for head in heads]

    def count(self, spend: int) -> None:
        """An attempt in the newest bucket (inside every window)."""
        row = self.current
        row[ATTEMPTS] += 1
        row[SPEND] += spend
        for total in self.full_sums:
            total[ATTEMPTS] += 1
            total[SPEND] += spend

    def allow(self, spend: int) -> None:
        """The attempt in the newest bucket was allowed."""
        row = self.current
        row[ALLOWED] += 1
        row[ALLOWED_SPEND] += spend
        for total in self.full_sums:
            total[ALLOWED] += 1
            total[ALLOWED_SPEND] += spend

    def add_at(self, bucket: int, column: int, amount: int) -> None:
        """Add to an earlier bucket: to the windows still covering it. A bucket the key no
        longer has (dropped) is outside every window already."""
        if column == SUCCESSES and self.log_spans:
            self._log(bucket, amount)
        buckets = self.buckets
        at = bisect_left(buckets, bucket)
        if at == len(buckets) or buckets[at] != bucket:
            return
        self.rows[at][column] += amount
        sums = self.full_sums
        for w, head in enumerate(self.heads):
            if at >= head:
                sums[w][column] += amount

    def _log(self, bucket: int, amount: int) -> None:
        """Successes in a bucket, to the success-only windows still covering it."""
        logged, counts, newest = self.log_buckets, self.log_counts, self.bucket
        if bucket < newest - max(self.log_spans):
            return  # outside every one of them
        end = len(logged)
        if end and logged[end - 1] == bucket:
            counts[end - 1] += amount
            added = False
        elif not end or logged[end - 1] < bucket:
            logged.append(bucket)
            counts.append(amount)
            added = True
        else:  # a result arriving after a later bucket's
            at = bisect_left(logged, bucket)
            added = logged[at] != bucket
            if added:
                logged.insert(at, bucket)
                counts.insert(at, amount)
            else:
                counts[at] += amount
        heads = self.log_heads
        for w, span in enumerate(self.log_spans):
            if bucket >= newest - span:
                self.log_sums[w][SUCCESSES] += amount
            elif added:  # a new bucket, older than this window's: before its head
                heads[w] += 1

    def forget_before(self, bucket: int) -> bool:
        """Drop buckets older than `bucket` no window still covers; False if none is left."""
        keep = min([bisect_left(self.buckets, bucket), *self.heads])
        if keep:
            del self.buckets[:keep]
            del self.rows[:keep]
            self.heads = [head - keep for head in self.heads]
        if self.log_spans:
            keep = min([bisect_left(self.log_buckets, bucket), *self.log_heads])
            if keep:
                del self.log_buckets[:keep]
                del self.log_counts[:keep]
                self.log_heads = [head - keep for head in self.log_heads]
        return self.bucket >= bucket


class ReplayCounters:
    """Every key's counts, and the clock's bucket arithmetic."""

    def __init__(self, bucket_seconds: int) -> None:
        self.size = bucket_seconds
        self.keys: dict[Hashable, KeyCounts] = {}

    def layout(self, windows: tuple[int, ...], successes_only: tuple[bool, ...] = ()) -> Layout:
        """Windows of these lengths in seconds: a window covers the ceil(W / bucket) most
        recent buckets, the current one included."""
        size = self.size
        spans = tuple((max(1, math.ceil(w / size)) - 1) * size for w in windows)
        return Layout(spans, successes_only)

    def bucket(self, epoch: float) -> int:
        seconds = int(epoch)
        return seconds - seconds % self.size

    def at(self, key: Hashable, layout: Layout, bucket: int) -> KeyCounts:
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
