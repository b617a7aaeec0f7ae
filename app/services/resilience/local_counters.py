"""Counters kept in this process while the database is away: a local approximation.

Same buckets and semantics as the SQL and Redis backends, but they only know the attempts
this process saw during the outage; they are emptied when the database returns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.store.buckets import (
    COLUMNS,
    MICROS,
    PENDING,
    BucketClock,
    WindowQuery,
    pending_deltas,
    settle_deltas,
)

_Row = dict[str, int]


class MemoryCounters:
    """A CounterBackend in memory; the `conn` argument is accepted and unused."""

    def __init__(self, bucket_seconds: int, retention_seconds: int) -> None:
        self.clock = BucketClock(bucket_seconds)
        self._retention = retention_seconds
        self._rows: dict[str, dict[int, _Row]] = defaultdict(dict)

    def clear(self) -> None:
        self._rows.clear()

    async def observe(
        self,
        conn: Any,
        *,
        keys: Iterable[str],
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> dict[WindowQuery, float]:
        bucket = self.clock.bucket(now)
        self._add(keys, bucket, {"attempts": 1, "spend_micros": spend_micros})
        self._add(held, bucket, pending_deltas(spend_micros))
        return {q: self._window(q, now) for q in queries}

    async def peek(
        self, conn: Any, *, queries: Sequence[WindowQuery], now: datetime, spend_micros: int
    ) -> dict[WindowQuery, float]:
        own = {"attempts": 1.0, "spend": spend_micros / MICROS}
        return {q: self._window(q, now) + own.get(q.measure, 0.0) for q in queries}

    async def forget(
        self,
        conn: Any,
        *,
        keys: Iterable[str],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> None:
        bucket = self.clock.bucket(now)
        self._add(keys, bucket, {"attempts": -1, "spend_micros": -spend_micros})
        self._add(held, bucket, {k: -v for k, v in pending_deltas(spend_micros).items()})

    async def settle(
        self, conn: Any, *, keys: Iterable[str], now: datetime, spend_micros: int, allowed: bool
    ) -> None:
        self._add(keys, self.clock.bucket(now), settle_deltas(spend_micros, allowed=allowed))

    async def record_success(
        self, conn: Any, *, keys: Iterable[str], requested_at: datetime
    ) -> None:
        self._add(keys, self.clock.bucket(requested_at), {"successes": 1})

    def _add(self, keys: Iterable[str], bucket: int, deltas: Mapping[str, int]) -> None:
        oldest = bucket - self._retention
        for key in set(keys):
            buckets = self._rows[key]
            row = buckets.setdefault(bucket, defaultdict(int))
            for name, delta in deltas.items():
                row[name] += delta
            for stale in [b for b in buckets if b < oldest]:
                del buckets[stale]

    def _window(self, query: WindowQuery, now: datetime) -> float:
        oldest = self.clock.oldest(now, query.window_seconds)
        column = COLUMNS[query.measure]
        names = (column, PENDING[column]) if column in PENDING else (column,)
        buckets = self._rows.get(query.key, {})
        total = sum(row.get(n, 0) for b, row in buckets.items() if b >= oldest for n in names)
        return total / MICROS if query.measure in ("spend", "allowed_spend") else float(total)
