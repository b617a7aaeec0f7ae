"""PostgreSQL counting statements: count an attempt and read its windows in one statement.

Every count goes to the key's minute row and to its hour row ("<key>@h", bucket = the hour's
start). A window is read from three ranges per key, each through the primary key: minutes
up to its first whole hour, whole hours before the current one from the hour rows, then
minutes up to the current one. A 24-hour window reads at most 2 x 59 + 24 rows per key,
not up to 1,440 (once a day of traffic was stored, the starter policy's conversion breaker
cost PostgreSQL ~0.3 ms per attempt). With a bucket size that does not divide an hour
there are no hour rows, and each window is read from its minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.buckets import HOUR, hour_twin
from app.store.pg_fastpath import VERSION_SQL, driver


def whole_hours(since: int, current: int) -> tuple[int, int]:
    """[a, b): the whole hours of the window [since, current] before the current bucket's
    hour, read from hour rows; the minutes [since, a) and [b, current) are read as such.
    a == b == since when there is none."""
    first, last = since + (-since) % HOUR, current - current % HOUR
    return (first, last) if first < last else (since, since)


class _Params:
    """Numbers the statement's parameters by name, in order of first use."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str, cast: str = "bigint") -> str:
        if name not in self.names:
            self.names.append(name)
        return f"${self.names.index(name) + 1}::{cast}"


@cache
def _count_sql(
    columns: tuple[str, ...],
    changed: tuple[str, ...],
    pairs: tuple[tuple[int, str], ...],
    held: tuple[str, ...],
    if_version: bool,
    flush_later: bool,
    hours: bool,
) -> tuple[str, tuple[str, ...]]:
    """The statement and its parameters' names (see count_and_read for their values)."""
    p = _Params()
    keys, bucket = p("keys", "text[]"), p("bucket")
    deltas = [p(f"d_{c}") for c in columns]
    for column in held:
        extra = f"CASE WHEN k = ANY({p('held', 'text[]')}) THEN {p(f'h_{column}')} ELSE 0 END"
        deltas[columns.index(column)] += f" + {extra}"
    update = ", ".join(
        f"{c} = counters.{c} + excluded.{c}" for c in columns if c in changed or c in held
    )
    names = ", ".join(columns)
    conditions = []
    if flush_later:
        # This statement's transaction commits without waiting for its WAL to reach the disk
        # (set_config(..., true) lasts until that commit). The hot rows it writes (one per
        # country, say) stayed locked through each fsync, and concurrent attempts queued
        # behind each other: ~0.9 ms per statement under load, ~0.16 ms so. Nothing answered
        # is lost: the answer waits for the store's synchronous commit, which comes later on
        # the same connection, and flushing it flushes this one.
        conditions.append("set_config('synchronous_commit', 'off', true) IS NOT NULL")
    if if_version:
        # Both reads of the version see the statement's one snapshot: counted iff current.
        conditions.append(f"({VERSION_SQL}) = {p('version', 'integer')}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    key_expr, bucket_expr, rows, order = "k", bucket, f"unnest({keys}) AS k", "k"
    if hours:
        # One INSERT for the minute rows and the hour rows, in one order (minutes, then
        # hours, each by key) that every statement writing counters follows: two INSERTs
        # (CTEs) ran in no fixed order, and a count and a store deadlocked.
        twin = hour_twin("")
        key_expr = f"CASE WHEN t.h = 0 THEN k ELSE k || '{twin}' END"
        bucket_expr = f"CASE WHEN t.h = 0 THEN {bucket} ELSE {p('hour')} END"
        rows += " CROSS JOIN (VALUES (0), (1)) AS t(h)"
        order = "t.h, k"
    ctes = [
        f"ins AS (INSERT INTO counters (key, bucket, {names}) "
        f"SELECT {key_expr}, {bucket_expr}, {', '.join(deltas)} FROM {rows}{where} "
        f"ORDER BY {order} "
        f"ON CONFLICT (key, bucket) DO UPDATE SET {update} RETURNING key, {names})",
        f"up AS (SELECT * FROM ins WHERE right(key, 2) <> '{hour_twin('')}')",
    ]
    picked, joins = [f"up.{c}" for c in columns], ""
    if pairs:
        picked_older, joins = _older(p, pairs, hours)
        picked += picked_older
    source = "up"
    if if_version:
        source = f"({VERSION_SQL}) AS pv LEFT JOIN up ON true"
        picked.insert(0, "pv.version AS policy_version")
    sql = f"WITH {', '.join(ctes)} SELECT up.key, {', '.join(picked)} FROM {source}{joins}"
    return sql, tuple(p.names)


def _older(p: _Params, pairs: tuple[tuple[int, str], ...], hours: bool) -> tuple[list[str], str]:
    """Per key (LATERAL, so that even a generic plan reads each key's own rows through the
    primary key), each (window, column) sum of the buckets before the current one."""
    windows = sorted({w for w, _ in pairs})
    since = {w: p(f"since_{w}") for w in windows}
    first = {w: p(f"a_{w}") for w in windows}  # whole hours [a, b); a == b == since: none
    last = {w: p(f"b_{w}") for w in windows}
    parts = {
        "head": (first, "up.key", f"bucket >= {p('head_lo')} AND bucket < {p('head_hi')}"),
        "tail": (last, "up.key", f"bucket >= {p('tail_lo')} AND bucket < {p('bucket')}"),
    }
    if hours:
        twin = f"up.key || '{hour_twin('')}'"
        parts["hrs"] = (last, twin, f"bucket >= {p('hrs_lo')} AND bucket < {p('hrs_hi')}")
    joins = []
    for name, (_, key, bounds) in parts.items():
        sums = []
        for w, c in pairs:
            inside = {
                "head": f"bucket >= {since[w]} AND bucket < {first[w]}",
                "hrs": f"bucket >= {first[w]} AND bucket < {last[w]}",
                "tail": f"bucket >= {last[w]}",
            }[name]
            sums.append(f"sum(CASE WHEN {inside} THEN {c} ELSE 0 END) AS {c}_{w}")
        joins.append(
            f" LEFT JOIN LATERAL (SELECT {', '.join(sums)} FROM counters "
            f"WHERE counters.key = {key} AND {bounds}) AS {name} ON true"
        )
    picked = [
        " + ".join(f"coalesce({name}.{c}_{w}, 0)" for name in parts) + f" AS {c}_{w}"
        for w, c in pairs
    ]
    return picked, "".join(joins)


async def count_and_read(
    conn: AsyncConnection,
    *,
    keys: Sequence[str],
    bucket: int,
    columns: tuple[str, ...],
    deltas: Mapping[str, int],
    since: Mapping[int, int],
    pairs: tuple[tuple[int, str], ...],
    held: Sequence[str] = (),
    held_deltas: Mapping[str, int] | None = None,
    if_version: int | None = None,
    flush_later: bool = False,
    hours: bool = True,
) -> dict[str, dict[str, Any]] | None:
    """Add the deltas to each key's current bucket (and `held_deltas` to the `held` keys),
    and to its hour row when `hours`; return its totals and older window sums.

    With `if_version`, only if the policy is still at that version, read in the same
    statement: None (nothing counted) when it is not. With `flush_later`, the commit does not
    wait for the disk: only for a count a synchronous store follows on this connection.
    """
    changed = tuple(c for c in columns if deltas.get(c))
    extra = held_deltas or {}
    held_columns = tuple(c for c in columns if extra.get(c)) if held else ()
    sql, names = _count_sql(
        columns, changed, pairs, held_columns, if_version is not None, flush_later, hours
    )
    values: dict[str, Any] = {"keys": list(keys), "bucket": bucket, "held": list(held)}
    values.update({f"d_{c}": deltas.get(c, 0) for c in columns})
    values.update({f"h_{c}": extra.get(c, 0) for c in held_columns})
    values["version"], values["hour"] = if_version, bucket - bucket % HOUR
    if pairs:
        values.update(_window_values(since, bucket, hours))
    apg = await driver(conn)
    rows = await apg.fetch(sql, *(values[name] for name in names))
    if if_version is not None and rows[0]["policy_version"] != if_version:
        return None
    return {row["key"]: dict(row) for row in rows}


def _window_values(since: Mapping[int, int], current: int, hours: bool) -> dict[str, int]:
    values: dict[str, int] = {}
    spans = {w: whole_hours(s, current) if hours else (s, s) for w, s in since.items()}
    for w, start in since.items():
        values[f"since_{w}"], (values[f"a_{w}"], values[f"b_{w}"]) = start, spans[w]
    values["head_lo"], values["head_hi"] = min(since.values()), max(a for a, _ in spans.values())
    values["hrs_lo"] = min(a for a, _ in spans.values())
    values["hrs_hi"] = max(b for _, b in spans.values())
    values["tail_lo"] = min(b for _, b in spans.values())
    return values


@cache
def _read_sql(
    columns: tuple[str, ...], windows: tuple[int, ...], pairs: tuple[tuple[int, str], ...]
) -> str:
    """$1 keys, $2 current bucket, $3 oldest bucket, then one `since` per window: per key, the
    current bucket's totals and each (window, column) sum over the older buckets (from the
    minute rows: a dry run is rare, and the minutes hold everything)."""
    since = {w: f"${4 + i}" for i, w in enumerate(windows)}
    current = [f"coalesce(sum({c}) FILTER (WHERE bucket = $2::bigint), 0) AS {c}" for c in columns]
    older = [
        f"coalesce(sum({c}) FILTER (WHERE bucket >= {since[w]}::bigint "
        f"AND bucket < $2::bigint), 0) AS {c}_{w}"
        for w, c in pairs
    ]
    # The aggregate inside the LATERAL keeps it a per-key subquery (a plain one would be
    # pulled up into a join, free to read the window of every key through the bucket index).
    return (
        "SELECT k AS key, w.* FROM unnest($1::text[]) AS k "
        f"CROSS JOIN LATERAL (SELECT {', '.join(current + older)} FROM counters "
        "WHERE counters.key = k AND bucket >= $3::bigint AND bucket <= $2::bigint) AS w"
    )


async def read_windows(
    conn: AsyncConnection,
    *,
    keys: Sequence[str],
    bucket: int,
    columns: tuple[str, ...],
    since: Mapping[int, int],
    pairs: tuple[tuple[int, str], ...],
) -> dict[str, dict[str, Any]]:
    """Read what `count_and_read` returns, counting nothing (per key, by primary key)."""
    windows = tuple(sorted(since))
    oldest = min(since.values(), default=bucket)
    sql = _read_sql(columns, windows, pairs)
    apg = await driver(conn)
    args = [list(keys), bucket, oldest, *(since[w] for w in windows)]
    return {row["key"]: dict(row) for row in await apg.fetch(sql, *args)}
