"""The counter model for a replay (backtests): time only moves forward, so each window keeps a
running sum, advanced as its oldest bucket moves on, instead of summing its buckets per read.

Why not the memory backend: it sums every bucket of a key on each read and scans them on each
write, and a 24 h window over 60 s buckets holds 1,440 of them per busy key (a country, the
global key): replaying 100k attempts of the starter policy took 6 minutes with it. The meaning
(buckets, which columns a measure reads, what a window covers) is the counter model's; a test
runs one history through this and the memory backend and compares every read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.store.counter_model import (
    READS,
    VALUE_COLUMNS,
    BucketClock,
    Capabilities,
    Changes,
    Measure,
    Reads,
    Totals,
)

_INDEX = {name: i for i, name in enumerate(VALUE_COLUMNS)}
_READ_INDEXES = {measure: tuple(_INDEX[c] for c in columns) for measure, columns in READS.items()}
Row = list[int]


def _at(bucket: int) -> datetime:
    return datetime.fromtimestamp(bucket, UTC)


_NO_WINDOWS: dict[int, _Window] = {}


@dataclass(slots=True)
class _Window:
    """A key's sums over [oldest, the newest bucket written]: the buckets in it, in order."""

    oldest: int
    totals: Row
    buckets: deque[int] = field(default_factory=deque)

    def advance(self, oldest: int, rows: dict[int, Row]) -> None:
        if oldest <= self.oldest:
            return
        buckets, totals = self.buckets, self.totals
        while buckets and buckets[0] < oldest:
            row = rows[buckets.popleft()]
            for i, amount in enumerate(row):
                totals[i] -= amount
        self.oldest = oldest


class ReplayWindows:
    """Rows by key then bucket, and per (key, window) a running sum. Reads must come in
    non-decreasing time, and changes never reach below the oldest bucket a window kept."""

    capabilities = Capabilities()

    def __init__(self, bucket_seconds: int) -> None:
        self.clock = BucketClock(bucket_seconds)
        self._rows: dict[str, dict[int, Row]] = {}
        self._windows: dict[str, dict[int, _Window]] = {}
        self._spans: dict[int, int] = {}  # window seconds -> its reach back from `now`'s bucket

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._rows.clear()
        self._windows.clear()

    @property
    def key_count(self) -> int:
        return len(self._rows)

    async def apply(self, conn: Any, changes: Changes) -> None:
        self.apply_now(changes)

    async def observe(
        self, conn: Any, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        assert version is None, "replay windows cannot check the policy version"
        return self.read_now(reads, changes)

    async def read(self, conn: Any, reads: Reads) -> Totals:
        return self.read_now(reads)

    def apply_now(self, changes: Changes) -> None:
        """`apply`, without awaiting (a replay is one synchronous loop)."""
        all_rows, all_windows = self._rows, self._windows
        for change in changes:
            deltas = [(_INDEX[name], delta) for name, delta in change.deltas.items()]
            bucket = change.bucket
            for key in change.keys:
                rows = all_rows.get(key)
                if rows is None:
                    rows = all_rows[key] = {}
                row = rows.get(bucket)
                new = row is None
                if row is None:
                    row = rows[bucket] = [0] * len(VALUE_COLUMNS)
                for i, delta in deltas:
                    row[i] += delta
                for window in all_windows.get(key, _NO_WINDOWS).values():
                    if bucket >= window.oldest:
                        for i, delta in deltas:
                            window.totals[i] += delta
                        if new:
                            window.buckets.append(bucket)

    def read_now(self, reads: Reads, changes: Changes = ()) -> Totals:
        """`changes` applied, then `read`, without awaiting (a replay is one loop)."""
        self.apply_now(changes)
        current = self.clock.bucket(reads.now)
        return {q: self.total(q.key, q.window_seconds, q.measure, current) for q in reads.queries}

    def total(self, key: str, seconds: int, measure: Measure, current: int) -> int:
        """The sum a read returns for one window, `current` being the bucket of its `now`."""
        span = self._spans.get(seconds)
        if span is None:  # the bucket's start is all `oldest` reads of `now`
            span = self._spans[seconds] = current - self.clock.oldest(_at(current), seconds)
        totals = self._window(key, seconds, current - span).totals
        return sum([totals[i] for i in _READ_INDEXES[measure]])

    def _window(self, key: str, seconds: int, oldest: int) -> _Window:
        windows = self._windows.get(key)
        if windows is None:
            windows = self._windows[key] = {}
        window = windows.get(seconds)
        if window is not None:
            if oldest > window.oldest:
                window.advance(oldest, self._rows.get(key, {}))
            return window
        rows = self._rows.get(key, {})
        window = windows[seconds] = _Window(oldest, [0] * len(VALUE_COLUMNS))
        for bucket in sorted(b for b in rows if b >= oldest):
            window.buckets.append(bucket)
            for i, amount in enumerate(rows[bucket]):
                window.totals[i] += amount
        return window

    def forget_before(self, bucket: int) -> None:
        """Drop buckets older than `bucket` (no window may read them any more), and keys left
        with none: a long replay keeps only what its windows can still read."""
        for key in list(self._rows):
            rows = self._rows[key]
            for window in self._windows.get(key, {}).values():
                window.advance(bucket, rows)
            for stale in [b for b in rows if b < bucket]:
                del rows[stale]
            if not rows:
                del self._rows[key]
                self._windows.pop(key, None)
