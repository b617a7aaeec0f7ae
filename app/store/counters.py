"""Velocity and conversion counters in SQL: bucketed rows, upserted atomically per attempt.

A window of W seconds covers the ceil(W / bucket) most recent buckets, the current one
included. The upsert takes the row lock of the current bucket until commit, so concurrent
attempts on one key are counted one after another: a burst cannot slip past a limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Table, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import CounterRow
from app.store.upsert import insert_for

Measure = Literal["attempts", "allowed", "spend", "allowed_spend", "successes"]
COLUMNS: dict[str, str] = {
    "attempts": "attempts",
    "allowed": "allowed",
    "spend": "spend_micros",
    "allowed_spend": "allowed_spend_micros",
    "successes": "successes",
}
MICROS = 1_000_000
counters = cast(Table, CounterRow.__table__)


@dataclass(frozen=True, slots=True)
class WindowQuery:
    key: str
    window_seconds: int
    measure: Measure


def to_micros(amount: float | None) -> int:
    return round(amount * MICROS) if amount else 0


class BucketClock:
    def __init__(self, bucket_seconds: int) -> None:
        self.size = bucket_seconds

    def bucket(self, moment: datetime) -> int:
        epoch = int(moment.timestamp())
        return epoch - epoch % self.size

    def oldest(self, now: datetime, window_seconds: int) -> int:
        buckets = max(1, math.ceil(window_seconds / self.size))
        return self.bucket(now) - (buckets - 1) * self.size


class SqlCounters:
    """Counters kept in the verifications database, inside the request's transaction."""

    def __init__(self, bucket_seconds: int) -> None:
        self.clock = BucketClock(bucket_seconds)

    async def observe(
        self,
        conn: AsyncConnection,
        *,
        keys: Iterable[str],
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
        hold_allowed: bool = False,
    ) -> dict[WindowQuery, float]:
        """Count this attempt under every key, then read every window (this attempt included).

        Allowed-only windows count this attempt as if allowed: the limit is about whether
        allowing it would exceed the maximum. Row locks make `hold_allowed` moot here.
        """
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        await self._add(conn, ordered, self.clock.bucket(now), attempts=1, spend=spend_micros)
        values = await self._read(conn, queries, now)
        for query in values:
            if query.measure == "allowed":
                values[query] += 1
            elif query.measure == "allowed_spend":
                values[query] += spend_micros / MICROS
        return values

    async def settle(
        self,
        conn: AsyncConnection,
        *,
        keys: Iterable[str],
        now: datetime,
        spend_micros: int,
        allowed: bool,
    ) -> None:
        """The decision is made: count the attempt as allowed if it was."""
        ordered = sorted(set(keys))
        if ordered and allowed:
            bucket = self.clock.bucket(now)
            await self._add(conn, ordered, bucket, allowed=1, allowed_spend=spend_micros)

    async def record_success(
        self, conn: AsyncConnection, *, keys: Iterable[str], requested_at: datetime
    ) -> None:
        """A verification ended SUCCESSFUL: credit the bucket of its request."""
        ordered = sorted(set(keys))
        if ordered:
            await self._add(conn, ordered, self.clock.bucket(requested_at), successes=1)

    async def _add(
        self,
        conn: AsyncConnection,
        keys: Sequence[str],
        bucket: int,
        *,
        attempts: int = 0,
        allowed: int = 0,
        spend: int = 0,
        allowed_spend: int = 0,
        successes: int = 0,
    ) -> None:
        values = {
            "attempts": attempts,
            "allowed": allowed,
            "spend_micros": spend,
            "allowed_spend_micros": allowed_spend,
            "successes": successes,
        }
        stmt = insert_for(conn, counters).values(
            [{"key": key, "bucket": bucket, **values} for key in keys]
        )
        changed = {name: counters.c[name] + stmt.excluded[name] for name, v in values.items() if v}
        if changed:
            stmt = stmt.on_conflict_do_update(index_elements=["key", "bucket"], set_=changed)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["key", "bucket"])
        await conn.execute(stmt)

    async def _read(
        self, conn: AsyncConnection, queries: Sequence[WindowQuery], now: datetime
    ) -> dict[WindowQuery, float]:
        if not queries:
            return {}
        pairs = sorted({(q.window_seconds, COLUMNS[q.measure]) for q in queries})
        columns: list[Any] = [counters.c.key]
        for window, column in pairs:
            since = self.clock.oldest(now, window)
            columns.append(
                func.sum(case((counters.c.bucket >= since, counters.c[column]), else_=0)).label(
                    f"{column}_{window}"
                )
            )
        oldest = min(self.clock.oldest(now, window) for window, _ in pairs)
        stmt = (
            select(*columns)
            .where(
                counters.c.key.in_(sorted({q.key for q in queries})), counters.c.bucket >= oldest
            )
            .group_by(counters.c.key)
        )
        rows = {row[0]: row._mapping for row in await conn.execute(stmt)}
        out: dict[WindowQuery, float] = {}
        for q in queries:
            column = COLUMNS[q.measure]
            raw = rows[q.key][f"{column}_{q.window_seconds}"] if q.key in rows else 0
            value = float(raw or 0)
            out[q] = value / MICROS if column.endswith("micros") else value
        return out
