"""Group commit of counting on PostgreSQL: a batch of attempts counted in one statement.

The attempts of a batch (in arrival order) are summed per key and upserted into their
bucket at once; the upsert returns each key's totals after the whole batch, atomically (the
rows stay locked until the statement's transaction ends). Each attempt's own totals are
then running totals in arrival order: the totals before the batch (after, less the batch's
sum) plus the attempts up to and including it. So every attempt still sees distinct,
correctly ordered totals, and a burst to one key is cut at exactly its limit, as if each
had been counted by its own statement (pg_counters.py) one after another.

Attempts are counted only under the policy version they were planned with, read by the
same statement (those planned under another get None, and are counted by the caller's
slow path). A batch that spans a bucket boundary (or two versions) is one statement per
(bucket, version), the earlier bucket first, so the later ones read its counts as older.
Like the single-attempt statement, its transaction commits without waiting for the WAL to
reach the disk: the decisions' synchronous store commits after it, and flushes it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.counter_model import (
    READS,
    VALUE_COLUMNS,
    BucketClock,
    Changes,
    Measure,
    Reads,
    Totals,
    WindowQuery,
)
from app.store.pg_fastpath import VERSION_SQL, driver
from app.store.pg_windows import HOUR, Binds, older_joins, older_values


@dataclass(frozen=True, slots=True)
class CountItem:
    """One attempt: its changes (of one bucket), the windows it reads, its policy version."""

    changes: Changes
    reads: Reads
    version: int


Pairs = tuple[tuple[int, str], ...]  # (window seconds, column) sums over older buckets


@cache
def _statement(pairs: Pairs) -> tuple[str, tuple[Hashable, ...]]:
    """Upsert the batch's summed deltas (rows in key order) if the policy is still at $2;
    the version, then per key its totals and its older buckets' sums (pg_windows.py). The
    statement's text, and the names of its parameters in order."""
    bind = Binds()
    bucket, version, rows = (
        bind("bucket", "bigint"),
        bind("version", "integer"),
        bind("rows", "json"),
    )
    names = ", ".join(VALUE_COLUMNS)
    update = ", ".join(f"{c} = counters.{c} + excluded.{c}" for c in VALUE_COLUMNS)
    # rows: one JSON array of [key, value per column] rows, not an array parameter per
    # column (asyncpg encodes those element by element, with isinstance checks each).
    unpacked = ", ".join(
        ["e->>0 AS key"] + [f"(e->>{j + 1})::bigint AS {c}" for j, c in enumerate(VALUE_COLUMNS)]
    )
    older, sums = older_joins(pairs, "up.key", bucket, bind, only_long=True)
    picked = ", ".join([f"up.{c}" for c in VALUE_COLUMNS] + sums)
    sql = (
        f"WITH up AS (INSERT INTO counters (key, bucket, {names}) "
        f"SELECT k.key, {bucket}, {', '.join(f'k.{c}' for c in VALUE_COLUMNS)} "
        f"FROM (SELECT {unpacked} FROM json_array_elements({rows}) AS e) AS k "
        f"WHERE ({VERSION_SQL}) = {version} "
        "AND set_config('synchronous_commit', 'off', true) IS NOT NULL ORDER BY k.key "
        f"ON CONFLICT (key, bucket) DO UPDATE SET {update} RETURNING key, {names}) "
        f"SELECT pv.version AS policy_version, up.key, {picked} "
        f"FROM ({VERSION_SQL}) AS pv LEFT JOIN up ON true{older}"
    )
    return sql, tuple(bind.names)


async def count_batch(
    conn: AsyncConnection, clock: BucketClock, items: Sequence[CountItem]
) -> list[Totals | None]:
    """Each attempt's window totals, counted with the batch; None: not counted (the policy
    had moved on from its version)."""
    out: list[Totals | None] = [None] * len(items)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, item in enumerate(items):
        bucket = item.changes[0].bucket if item.changes else clock.bucket(item.reads.now)
        groups.setdefault((bucket, item.version), []).append(i)
    for (bucket, version), indexes in sorted(groups.items()):
        group = [items[i] for i in indexes]
        totals = await _count_group(conn, clock, bucket, version, group)
        for i, found in zip(indexes, totals, strict=True):
            out[i] = found
    return out


_INDEX = {column: j for j, column in enumerate(VALUE_COLUMNS)}


def _deltas(item: CountItem) -> dict[str, list[int]]:
    """Per key, what the attempt adds to each value column."""
    per_key: dict[str, list[int]] = {}
    for change in item.changes:
        # (index, delta) of the columns it changes: the others add nothing
        moves = [(_INDEX[c], d) for c, d in change.deltas.items() if d and c in _INDEX]
        for key in change.keys:
            row = per_key.get(key)
            if row is None:
                row = per_key[key] = [0] * len(VALUE_COLUMNS)
            for j, d in moves:
                row[j] += d
    return per_key


async def _count_group(
    conn: AsyncConnection,
    clock: BucketClock,
    bucket: int,
    version: int,
    items: Sequence[CountItem],
) -> list[Totals | None]:
    now = items[0].reads.now
    pairs = _pairs(clock, items, bucket, now)
    deltas = [_deltas(item) for item in items]
    summed: dict[str, list[int]] = {}
    for per_key in deltas:
        for key, row in per_key.items():
            total = summed.setdefault(key, [0] * len(VALUE_COLUMNS))
            for j, d in enumerate(row):
                total[j] += d
    keys = sorted(summed)
    values = older_values(clock, now, bucket, {w for w, _ in pairs})
    values["bucket"], values["version"] = bucket, version
    values["long_keys"] = sorted(
        {q.key for item in items for q in item.reads.queries if q.window_seconds > HOUR}
    )
    values["rows"] = to_json([[k, *summed[k]] for k in keys]).decode()
    sql, names = _statement(pairs)
    apg = await driver(conn)
    rows = await apg.fetch(sql, *(values[name] for name in names))
    if rows[0]["policy_version"] != version:
        return [None] * len(items)
    after = {row["key"]: row for row in rows if row["key"] is not None}
    running = {
        key: [int(after[key][c]) - summed[key][j] for j, c in enumerate(VALUE_COLUMNS)]
        for key in keys
    }
    out: list[Totals | None] = []
    for item, per_key in zip(items, deltas, strict=True):
        own: dict[str, list[int]] = {}  # its keys' running totals, this attempt included
        for key, row in per_key.items():
            current = running[key]
            for j, d in enumerate(row):
                if d:
                    current[j] += d
            own[key] = current.copy()
        out.append(_window_sums(item.reads.queries, own, after))
    return out


def _window_sums(
    queries: Sequence[WindowQuery], own: Mapping[str, list[int]], after: Mapping[str, Any]
) -> Totals:
    """What pg_counters.window_sums reads from a row of the attempt's own running totals
    and its key's older buckets' sums (a key the attempt did not count reads 0)."""
    out: Totals = {}
    for q in queries:
        current = own.get(q.key)
        total = 0
        if current is not None:
            row = after[q.key]
            for j, older in _read_columns(q.measure, q.window_seconds):
                total += current[j] + int(row.get(older) or 0)
        out[q] = total
    return out


@cache
def _read_columns(measure: Measure, window: int) -> tuple[tuple[int, str], ...]:
    """Each column a window of `measure` sums: its index in VALUE_COLUMNS, and the name of
    its older buckets' sum in the statement's rows."""
    return tuple((_INDEX[c], f"{c}_{window}") for c in READS[measure])


def _pairs(clock: BucketClock, items: Sequence[CountItem], bucket: int, now: Any) -> Pairs:
    """Every (window, column) any attempt of the group reads before the current bucket."""
    wanted = {
        (q.window_seconds, c)
        for item in items
        for q in item.reads.queries
        for c in READS[q.measure]
    }
    return tuple(sorted((w, c) for w, c in wanted if clock.oldest(now, w) < bucket))
