"""The counter model on PostgreSQL: one statement applies an attempt's changes and reads
its windows, on the raw asyncpg connection of an autocommit counting connection.

SQLAlchemy costs ~130 µs of CPU per statement over asyncpg, so the hot path bypasses it.
Each call is one statement in its own transaction: a hot key (a country, `global`) is
locked only while PostgreSQL applies it, and the upsert returns the bucket's new totals,
so concurrent attempts on one key see distinct counts. Parameters are numbered from one
list of names (`pg_windows.Binds`), from which the argument list is built too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.counter_model import (
    READS,
    VALUE_COLUMNS,
    BucketClock,
    Changes,
    CounterDeltas,
    Reads,
    Totals,
    WindowQuery,
    touched,
)
from app.store.pg_fastpath import VERSION_SQL, driver
from app.store.pg_windows import Binds, older_joins, older_values


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a counting statement's text depends on (its values are parameters)."""

    changes: tuple[tuple[bool, tuple[str, ...]], ...]  # per change: all keys?, columns
    pairs: tuple[tuple[int, str], ...]  # (window, column) sums over the older buckets
    if_version: bool = False
    flush_later: bool = False


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    names: tuple[Hashable, ...]


def _delta(shape: _Shape, column: str, bind: Binds) -> str:
    """The delta a key gets in `column`: the sum of what each change gives it."""
    terms = []
    for i, (everywhere, columns) in enumerate(shape.changes):
        if column not in columns:
            continue
        delta = bind(("delta", i, column), "bigint")
        if everywhere:
            terms.append(delta)
        else:
            keys = bind(("keys", i), "text[]")
            terms.append(f"CASE WHEN k = ANY({keys}) THEN {delta} ELSE 0 END")
    return " + ".join(terms) or "0"


def _older(shape: _Shape, bind: Binds) -> tuple[str, list[str]]:
    """Per key (LATERAL), so that even the generic plan of this prepared statement reads
    each key's own rows through the primary key, whatever the table grows to; a
    key = ANY(...) form let it pick the bucket index and read every key's rows. Whole hours
    come from their hour totals (store/pg_windows.py)."""
    return older_joins(shape.pairs, "up.key", bind("bucket", "bigint"), bind)


def own_buckets(key: str, oldest: str, below: str, bucket: str) -> str:
    """`key`'s rows from bucket `oldest` to `bucket` (`below`: "<" or "<="), as row
    comparisons on (key, bucket): only the primary key can serve them. With `bucket >= …`
    written on its own, a generic plan made while the table was never analysed (a fresh
    database: both indexes look alike then) read the window through the bucket index,
    every key's rows of it filtered by key, and PostgreSQL's CPU doubled as the table grew
    (tests/store/test_generic_plans.py)."""
    return (
        f"counters.key = {key} AND (counters.key, counters.bucket) >= ({key}, {oldest}) "
        f"AND (counters.key, counters.bucket) {below} ({key}, {bucket})"
    )


@cache
def _count_statement(shape: _Shape) -> _Statement:
    """Upsert every touched key's current bucket, returning its totals and older sums.

    With `if_version` the rows start with the policy version read (one row with no key when
    nothing was counted): counted iff the version is the one given, in one snapshot."""
    bind = Binds()
    keys, bucket = bind("keys", "text[]"), bind("bucket", "bigint")
    deltas = [_delta(shape, c, bind) for c in VALUE_COLUMNS]
    written = {c for _, columns in shape.changes for c in columns}
    update = ", ".join(f"{c} = counters.{c} + excluded.{c}" for c in VALUE_COLUMNS if c in written)
    names = ", ".join(VALUE_COLUMNS)
    conditions, source, picked = [], "up", [f"up.{c}" for c in VALUE_COLUMNS]
    if shape.flush_later:
        # This statement's transaction commits without waiting for its WAL to reach the disk
        # (set_config(..., true) lasts until that commit). The hot rows it writes stayed
        # locked through each fsync, and concurrent attempts queued behind each other: ~0.9
        # ms per statement under load, ~0.16 ms so. Nothing answered is lost: the answer
        # waits for the store's synchronous commit on the same connection, which flushes it.
        conditions.append("set_config('synchronous_commit', 'off', true) IS NOT NULL")
    if shape.if_version:
        conditions.append(f"({VERSION_SQL}) = {bind('version', 'integer')}")
        source = f"({VERSION_SQL}) AS pv LEFT JOIN up ON true"
        picked.insert(0, "pv.version AS policy_version")
    older, sums = _older(shape, bind)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"WITH up AS (INSERT INTO counters (key, bucket, {names}) "
        f"SELECT k, {bucket}, {', '.join(deltas)} FROM unnest({keys}) AS k{where} "
        f"ON CONFLICT (key, bucket) DO UPDATE SET {update} RETURNING key, {names}) "
        f"SELECT up.key, {', '.join(picked + sums)} FROM {source}{older}"
    )
    return _Statement(sql, tuple(bind.names))


@cache
def _read_statement(pairs: tuple[tuple[int, str], ...]) -> _Statement:
    """Per key, the current bucket's totals and each (window, column) sum over the older
    buckets. The aggregate inside the LATERAL keeps it a per-key subquery (a plain one would
    be pulled up into a join, free to read every key's window through the bucket index)."""
    bind = Binds()
    keys, bucket = bind("keys", "text[]"), bind("bucket", "bigint")
    current = ", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in VALUE_COLUMNS)
    older, sums = older_joins(pairs, "k", bucket, bind)
    picked = ", ".join([f"w.{c}" for c in VALUE_COLUMNS] + sums)
    sql = (
        f"SELECT k AS key, {picked} FROM unnest({keys}) AS k "
        f"CROSS JOIN LATERAL (SELECT {current} FROM counters "
        f"WHERE {own_buckets('k', bucket, '<=', bucket)}) AS w{older}"
    )
    return _Statement(sql, tuple(bind.names))


class PgCounters:
    """Counting and reading statements for one bucket clock."""

    def __init__(self, clock: BucketClock) -> None:
        self.clock = clock

    async def observe(
        self, conn: AsyncConnection, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        queries, now = reads.queries, reads.now
        """Apply changes of one bucket and read the windows, in one statement."""
        pairs = self._pairs(queries, now)
        values = self._since(pairs, now, changes[0].bucket)
        rows = await _count(conn, changes, pairs, values, version)
        return None if rows is None else window_sums(queries, rows)

    async def read(self, conn: AsyncConnection, reads: Reads) -> Totals:
        queries, now = reads.queries, reads.now
        pairs = self._pairs(queries, now)
        values = self._since(pairs, now, self.clock.bucket(now))
        values["keys"] = sorted({q.key for q in queries})
        values["bucket"] = self.clock.bucket(now)
        rows = await _fetch(conn, _read_statement(pairs), values)
        return window_sums(queries, {row["key"]: row for row in rows})

    def _pairs(self, queries: Sequence[WindowQuery], now: datetime) -> tuple[tuple[int, str], ...]:
        """(window, column) pairs whose window reaches back before the current bucket."""
        current = self.clock.bucket(now)
        pairs = sorted({(q.window_seconds, c) for q in queries for c in READS[q.measure]})
        return tuple((w, c) for w, c in pairs if self.clock.oldest(now, w) < current)

    def _since(
        self, pairs: Sequence[tuple[int, str]], now: datetime, bucket: int
    ) -> dict[Hashable, Any]:
        """The bounds of each window's parts (store/pg_windows.py)."""
        return older_values(self.clock, now, bucket, {w for w, _ in pairs})


_APPLY_SQL = (
    f"INSERT INTO counters (key, bucket, {', '.join(VALUE_COLUMNS)}) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], "
    + ", ".join(f"${i + 3}::bigint[]" for i in range(len(VALUE_COLUMNS)))
    + ") ON CONFLICT (key, bucket) DO UPDATE SET "
    + ", ".join(f"{c} = counters.{c} + excluded.{c}" for c in VALUE_COLUMNS)
)
"""Per-row deltas, one row per (key, bucket): one statement text for any set of changes."""


async def apply(conn: AsyncConnection, changes: Sequence[CounterDeltas]) -> None:
    """Apply changes, summed per (key, bucket), in one statement (rows in key order, so
    concurrent appliers lock them in the same order)."""
    summed: dict[tuple[str, int], dict[str, int]] = {}
    for change in changes:
        if not any(change.deltas.values()):
            continue
        for key in change.keys:
            row = summed.setdefault((key, change.bucket), {})
            for column, delta in change.deltas.items():
                row[column] = row.get(column, 0) + delta
    if not summed:
        return
    ordered = sorted(summed)
    args: list[list[Any]] = [[k for k, _ in ordered], [b for _, b in ordered]]
    args += [[summed[kb].get(c, 0) for kb in ordered] for c in VALUE_COLUMNS]
    apg = await driver(conn)
    await apg.execute(_APPLY_SQL, *args)


async def _count(
    conn: AsyncConnection,
    changes: Sequence[CounterDeltas],
    pairs: tuple[tuple[int, str], ...],
    values: dict[Hashable, Any],
    if_version: int | None,
) -> dict[str, Any] | None:
    """The rows a counting statement returns by key; None if the version had moved on."""
    keys = touched(changes)
    shape = _Shape(
        tuple((c.keys == keys, _written(c)) for c in changes),
        pairs,
        if_version is not None,
        # A live decision: its synchronous store follows on this connection.
        flush_later=if_version is not None,
    )
    values["keys"], values["bucket"], values["version"] = list(keys), changes[0].bucket, if_version
    for i, change in enumerate(changes):
        values[("keys", i)] = list(change.keys)
        values.update({("delta", i, c): d for c, d in change.deltas.items()})
    rows = await _fetch(conn, _count_statement(shape), values)
    if if_version is not None and rows[0]["policy_version"] != if_version:
        return None
    return {row["key"]: row for row in rows}


def _written(change: CounterDeltas) -> tuple[str, ...]:
    return tuple(c for c in VALUE_COLUMNS if change.deltas.get(c))


async def _fetch(
    conn: AsyncConnection, statement: _Statement, values: Mapping[Hashable, Any]
) -> Any:
    apg = await driver(conn)
    return await apg.fetch(statement.sql, *(values.get(name, 0) for name in statement.names))


def window_sums(queries: Sequence[WindowQuery], rows: Mapping[str, Any]) -> dict[WindowQuery, int]:
    """Each query's columns, over the current bucket and the older ones."""
    out: dict[WindowQuery, int] = {}
    for q in queries:
        row = rows.get(q.key)
        total = 0
        if row is not None:
            for column in READS[q.measure]:
                total += int(row[column] or 0)
                total += int(row.get(f"{column}_{q.window_seconds}") or 0)
        out[q] = total
    return out
