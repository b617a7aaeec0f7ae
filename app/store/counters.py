"""Velocity and conversion counters in SQL: one row per counter key and time bucket.

Run on an AUTOCOMMIT connection: each upsert is its own tiny transaction, so a hot key
(a country, `global`) is locked only while PostgreSQL applies one statement, never across
the request. The upsert returns the bucket's new totals, so concurrent attempts on one key
see distinct counts: a burst cannot slip past a limit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import pg_fastpath
from app.store import policy as policy_store
from app.store.buckets import (
    COLUMNS,
    MICROS,
    PENDING,
    VALUE_COLUMNS,
    BucketClock,
    CounterDeltas,
    Measure,
    WindowQuery,
    pending_deltas,
    settle_deltas,
)
from app.store.models import CounterRow
from app.store.upsert import cached, upsert

counters = cast(Table, CounterRow.__table__)


class SqlCounters:
    """Counters kept in the main database; `conn` must be in AUTOCOMMIT mode."""

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
        held: Collection[str] = (),
    ) -> dict[WindowQuery, float]:
        """Count this attempt under every key (pending under the `held` ones, until settled),
        then read every window (this attempt included)."""
        values = await self._observe(conn, keys, queries, now, spend_micros, held, None)
        assert values is not None  # no version to check: always counted
        return values

    async def observe_if_current(
        self,
        conn: AsyncConnection,
        *,
        version: int,
        keys: Iterable[str],
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> dict[WindowQuery, float] | None:
        """`observe`, only if the policy is still at `version` (on PostgreSQL, read by the
        counting statement itself); None, with nothing counted, if it is not."""
        return await self._observe(conn, keys, queries, now, spend_micros, held, version)

    async def _observe(
        self,
        conn: AsyncConnection,
        keys: Iterable[str],
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
        held: Collection[str],
        if_version: int | None,
    ) -> dict[WindowQuery, float] | None:
        ordered = sorted(set(keys))
        postgres = conn.dialect.name == "postgresql"
        # No counting statement to read the version in: read it first (on SQLite the read
        # and the count share the request's transaction).
        unread = if_version is not None and not (ordered and postgres)
        if unread and await policy_store.policy_version(conn) != if_version:
            return None
        if not ordered:
            return {}
        deltas = {"attempts": 1, "spend_micros": spend_micros}
        pending = pending_deltas(spend_micros)
        hold = sorted(set(held))
        if postgres:
            pairs = tuple(self._pairs(queries, now))
            rows = await pg_fastpath.count_and_read(
                conn,
                keys=ordered,
                bucket=self.clock.bucket(now),
                columns=VALUE_COLUMNS,
                deltas=deltas,
                since={w: self.clock.oldest(now, w) for w, _ in pairs},
                pairs=pairs,
                held=hold,
                held_deltas=pending,
                if_version=if_version,
                # A live decision: its synchronous store follows on this connection.
                flush_later=if_version is not None,
            )
            if rows is None:
                return None
            return {q: _value(q, rows.get(q.key, {}), rows.get(q.key, {})) for q in queries}
        bucket = self.clock.bucket(now)
        current = await add_rows(conn, ordered, bucket, deltas, held=hold, held_deltas=pending)
        older = await self._older(conn, queries, now)
        return {q: _value(q, current.get(q.key, {}), older.get(q.key, {})) for q in queries}

    def _pairs(self, queries: Sequence[WindowQuery], now: datetime) -> list[tuple[int, str]]:
        """(window, column) pairs whose window reaches back before the current bucket."""
        current = self.clock.bucket(now)
        pairs = sorted({(q.window_seconds, c) for q in queries for c in _columns(q.measure)})
        return [(w, c) for w, c in pairs if self.clock.oldest(now, w) < current]

    async def forget(
        self,
        conn: AsyncConnection,
        *,
        keys: Iterable[str],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> None:
        """Undo `observe` (the attempt turned out to be a redelivery)."""
        deltas = {"attempts": -1, "spend_micros": -spend_micros}
        pending = {name: -delta for name, delta in pending_deltas(spend_micros).items()}
        bucket = self.clock.bucket(now)
        await add_rows(
            conn, sorted(set(keys)), bucket, deltas, held=sorted(set(held)), held_deltas=pending
        )

    async def settle(
        self,
        conn: AsyncConnection,
        *,
        keys: Iterable[str],
        now: datetime,
        spend_micros: int,
        allowed: bool,
    ) -> None:
        """The attempt is decided: under the keys it was held pending under, it stops being
        pending, and counts as allowed if it was."""
        settled = self.settled(keys=keys, now=now, spend_micros=spend_micros, allowed=allowed)
        await add_rows(conn, settled.keys, settled.bucket, settled.deltas)

    def settled(
        self, *, keys: Iterable[str], now: datetime, spend_micros: int, allowed: bool
    ) -> CounterDeltas:
        """What `settle` adds, for a statement that applies it itself (the PostgreSQL store)."""
        deltas = settle_deltas(spend_micros, allowed=allowed)
        return CounterDeltas(tuple(sorted(set(keys))), self.clock.bucket(now), deltas)

    async def record_success(
        self, conn: AsyncConnection, *, keys: Iterable[str], requested_at: datetime
    ) -> None:
        """A verification ended SUCCESSFUL: credit the bucket of its request."""
        bucket = self.clock.bucket(requested_at)
        await add_rows(conn, sorted(set(keys)), bucket, {"successes": 1})

    async def peek(
        self,
        conn: AsyncConnection,
        *,
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
    ) -> dict[WindowQuery, float]:
        """Read every window without counting: what `Aggregator.observe` would report.

        Stored totals plus this attempt (one attempt, its spend); allowed-only windows
        leave it out, as the engine adds it itself. For dry runs (/admin/evaluate).
        """
        if not queries:
            return {}
        own = {"attempts": 1, "spend_micros": spend_micros}
        keys = sorted({q.key for q in queries})
        if conn.dialect.name == "postgresql":
            pairs = tuple(self._pairs(queries, now))
            rows = await pg_fastpath.read_windows(
                conn,
                keys=keys,
                bucket=self.clock.bucket(now),
                columns=VALUE_COLUMNS,
                since={w: self.clock.oldest(now, w) for w, _ in pairs},
                pairs=pairs,
            )
            return {q: _value(q, _plus(rows[q.key], own), rows[q.key]) for q in queries}
        bucket = await self._bucket(conn, keys, now)
        older = await self._older(conn, queries, now)
        return {
            q: _value(q, _plus(bucket.get(q.key, {}), own), older.get(q.key, {})) for q in queries
        }

    async def _bucket(
        self, conn: AsyncConnection, keys: Sequence[str], now: datetime
    ) -> dict[str, dict[str, int]]:
        """The current bucket's totals by key (read only)."""
        stmt = select(counters).where(
            counters.c.key.in_(keys), counters.c.bucket == self.clock.bucket(now)
        )
        return {row.key: dict(row._mapping) for row in await conn.execute(stmt)}

    async def _older(
        self, conn: AsyncConnection, queries: Sequence[WindowQuery], now: datetime
    ) -> dict[str, dict[str, int]]:
        """Totals of the buckets before the current one, per key and (column, window)."""
        current = self.clock.bucket(now)
        pairs = self._pairs(queries, now)
        if not pairs:
            return {}
        key_list = sorted({q.key for q in queries})
        stmt = cached(("older", tuple(pairs), len(key_list)), lambda: _older(pairs, len(key_list)))
        params: dict[str, Any] = {f"since_{w}": self.clock.oldest(now, w) for w, _ in pairs}
        params.update({f"key_{i}": key for i, key in enumerate(key_list)})
        params["oldest"] = min(params[f"since_{w}"] for w, _ in pairs)
        params["current"] = current
        return {row[0]: dict(row._mapping) for row in await conn.execute(stmt, params)}


async def add_rows(
    conn: AsyncConnection,
    keys: Sequence[str],
    bucket: int,
    deltas: Mapping[str, int],
    *,
    held: Sequence[str] = (),
    held_deltas: Mapping[str, int] | None = None,
) -> dict[str, dict[str, int]]:
    """Upsert the deltas into (key, bucket) rows, plus `held_deltas` into the `held` keys'
    rows; return the rows' new totals by key."""
    if conn.dialect.name == "postgresql":
        if not keys or not any(deltas.values()):
            return {}
        rows = await pg_fastpath.count_and_read(
            conn,
            keys=keys,
            bucket=bucket,
            columns=VALUE_COLUMNS,
            deltas=deltas,
            since={},
            pairs=(),
            held=held,
            held_deltas=held_deltas,
        )
        assert rows is not None  # no version to check: always counted
        return rows
    totals = await _upsert_rows(conn, keys, bucket, deltas)
    if held and held_deltas:
        totals |= await _upsert_rows(conn, held, bucket, held_deltas)
    return totals


async def _upsert_rows(
    conn: AsyncConnection, keys: Sequence[str], bucket: int, deltas: Mapping[str, int]
) -> dict[str, dict[str, int]]:
    changed = tuple(name for name in VALUE_COLUMNS if deltas.get(name))
    if not keys or not changed:
        return {}
    stmt = cached(("counters", len(keys), changed), lambda: _upsert(len(keys), changed))
    params: dict[str, Any] = {"bucket": bucket}
    params.update({name: deltas.get(name, 0) for name in VALUE_COLUMNS})
    # upsert() names a lone row's parameters after the column, else `<column>_<row>`.
    names = ["key"] if len(keys) == 1 else [f"key_{i}" for i in range(len(keys))]
    params.update(zip(names, keys, strict=True))
    result = await conn.execute(stmt, params)
    return {row[0]: dict(row._mapping) for row in result}


def _older(pairs: list[tuple[int, str]], count: int) -> Any:
    """Per-key sums of each (window, column) over the buckets before the current one."""
    columns: list[Any] = [counters.c.key]
    for window, column in pairs:
        inside = counters.c.bucket >= bindparam(f"since_{window}")
        total = func.sum(case((inside, counters.c[column]), else_=0))
        columns.append(total.label(f"{column}_{window}"))
    keys: list[Any] = [bindparam(f"key_{i}") for i in range(count)]
    return (
        select(*columns)
        .where(
            counters.c.key.in_(keys),
            counters.c.bucket >= bindparam("oldest"),
            counters.c.bucket < bindparam("current"),
        )
        .group_by(counters.c.key)
    )


def _upsert(count: int, changed: tuple[str, ...]) -> Any:
    """INSERT of `count` keys for one bucket, adding the deltas of `changed` on conflict."""
    return upsert(
        counters,
        ("key", "bucket", *VALUE_COLUMNS),
        conflict=["key", "bucket"],
        update={name: f"counters.{name} + excluded.{name}" for name in changed},
        returning=("key", *VALUE_COLUMNS),
        rows=count,
        shared=("bucket", *VALUE_COLUMNS),
    )


def _columns(measure: Measure) -> tuple[str, ...]:
    column = COLUMNS[measure]
    return (column, PENDING[column]) if column in PENDING else (column,)


def _value(query: WindowQuery, current: Mapping[str, Any], older: Mapping[str, Any]) -> float:
    total = 0
    for column in _columns(query.measure):
        total += int(current.get(column) or 0)
        total += int(older.get(f"{column}_{query.window_seconds}") or 0)
    return total / MICROS if query.measure in ("spend", "allowed_spend") else float(total)


def _plus(row: Mapping[str, Any], own: Mapping[str, int]) -> dict[str, int]:
    return {name: int(row.get(name) or 0) + own.get(name, 0) for name in VALUE_COLUMNS}
