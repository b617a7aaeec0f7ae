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
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

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


class CountItem(NamedTuple):
    """One attempt: its changes (of one bucket), the windows it reads, its policy version
    (a named tuple: one per request event, see counter_model.Reads)."""

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
_OLDER = 2 + len(VALUE_COLUMNS)  # a row: policy_version, key, the totals, then the sums


def _deltas(item: CountItem) -> dict[str, list[tuple[int, int]]]:
    """Per key, what the attempt adds: (index in VALUE_COLUMNS, delta) of each column it
    changes (the others add nothing)."""
    per_key: dict[str, list[tuple[int, int]]] = {}
    for change in item.changes:
        moves = [(_INDEX[c], d) for c, d in change.deltas.items() if d and c in _INDEX]
        for key in change.keys:
            per_key.setdefault(key, []).extend(moves)
    return per_key


async def _count_group(
    conn: AsyncConnection,
    clock: BucketClock,
    bucket: int,
    version: int,
    items: Sequence[CountItem],
) -> list[Totals | None]:
    now = items[0].reads.now
    shapes = {(q.window_seconds, q.measure) for item in items for q in item.reads.queries}
    pairs = _pairs(clock, shapes, bucket, now)
    deltas = [_deltas(item) for item in items]
    summed: dict[str, list[int]] = {}
    for per_key in deltas:
        for key, moves in per_key.items():
            total = summed.get(key)
            if total is None:
                total = summed[key] = [0] * len(VALUE_COLUMNS)
            for j, d in moves:
                total[j] += d
    keys = sorted(summed)
    values = older_values(clock, now, bucket, {w for w, _ in pairs})
    values["bucket"], values["version"] = bucket, version
    values["long_keys"] = sorted(
        {q.key for item in items for q in item.reads.queries if q.window_seconds > HOUR}
    )
    values["rows"] = to_json([[k, *summed[k]] for k in keys])  # bytes: store/base.py's codec
    sql, names = _statement(pairs)
    apg = await driver(conn)
    rows = await apg.fetch(sql, *(values[name] for name in names))
    if rows[0][0] != version:  # policy_version
        return [None] * len(items)
    # Rows read by index (the statement's column order), not by name: ~10 reads per attempt.
    after = {row[1]: row for row in rows if row[1] is not None}
    running = {
        key: [t - s for t, s in zip(after[key][2:_OLDER], summed[key], strict=True)] for key in keys
    }
    columns = _columns(pairs, shapes)
    out: list[Totals | None] = []
    for item, per_key in zip(items, deltas, strict=True):
        own: dict[str, list[int]] = {}  # its keys' running totals, this attempt included
        for key, moves in per_key.items():
            current = running[key]
            for j, d in moves:
                current[j] += d
            own[key] = current.copy()
        out.append(_window_sums(item.reads.queries, own, after, columns))
    return out


Columns = dict[tuple[int, Measure], tuple[tuple[int, int | None], ...]]
"""Per (window, measure): each column it sums, as its index in VALUE_COLUMNS and the index
of its older buckets' sum in the statement's rows (None: the window is the current bucket)."""


def _columns(pairs: Pairs, shapes: set[tuple[int, Measure]]) -> Columns:
    at = {pair: _OLDER + i for i, pair in enumerate(pairs)}
    return {(w, m): tuple((_INDEX[c], at.get((w, c))) for c in READS[m]) for w, m in shapes}


def _window_sums(
    queries: Sequence[WindowQuery],
    own: Mapping[str, list[int]],
    after: Mapping[str, Any],
    columns: Columns,
) -> Totals:
    """What pg_counters.window_sums reads from a row of the attempt's own running totals
    and its key's older buckets' sums (a key the attempt did not count reads 0)."""
    out: Totals = {}
    for q in queries:
        current = own.get(q.key)
        total = 0
        if current is not None:
            row = after[q.key]
            for j, older in columns[q.window_seconds, q.measure]:
                total += current[j] if older is None else current[j] + row[older]
        out[q] = total
    return out


def _pairs(
    clock: BucketClock, shapes: set[tuple[int, Measure]], bucket: int, now: datetime
) -> Pairs:
    """Every (window, column) the group's (window, measure) read before the current bucket."""
    current = clock.bucket(now)
    reach = {w: clock.first(current, w) < bucket for w in {w for w, _ in shapes}}
    return tuple(sorted({(w, c) for w, m in shapes if reach[w] for c in READS[m]}))
