"""A key's window sums before the current bucket, from hour totals and edge buckets.

A window of W seconds sums the key's buckets from its first (`since`) up to the current
one. Read bucket by bucket, a 24 h window of one-minute buckets is 1,440 rows per key and
attempt once a day of history exists (bench/counter_history.py). `counter_hours` holds,
per key and hour, what windows read of the buckets starting in that hour (each measure's
sum: store/hour_triggers.py), so each window is read as
  - its old edge: the buckets from `since` to the first whole hour (or to the current
    hour, whichever comes first), from `counters`;
  - its whole hours, up to the current hour, from `counter_hours`;
  - the current hour's buckets before the current one, from `counters` (one scan shared by
    every window: a window starting inside the current hour takes its part of it);
a window of an hour or less is read by buckets only, the shared scan reaching back to its
first bucket (no hour of it is whole; it would be two parts for ~60 buckets otherwise);
that is at most ~2 hours of buckets and 24 hour rows for a 24 h window, whatever the
history holds. The parts never overlap, and every bucket counts in the hour it starts in,
so the totals are the buckets' own, for any bucket size.

Each part is a LATERAL scan of one key's rows through the primary key, written as row
comparisons so that even a generic plan made on a young table cannot take the bucket or
hour index (pg_counters.own_buckets; tests/store/test_generic_plans.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Any

from app.store.counter_model import BucketClock

HOUR = 3600

Pairs = tuple[tuple[int, str], ...]
"""(window seconds, column) sums the statement returns as `{column}_{window}`."""


class Binds:
    """`$n` placeholders numbered by first use of a name; `names` is the argument order."""

    def __init__(self) -> None:
        self.names: list[Hashable] = []

    def __call__(self, name: Hashable, cast: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return f"${self.names.index(name) + 1}::{cast}"


def key_range(table: str, column: str, key: str, first: str, below: str) -> str:
    """`key`'s rows of `table` with `column` from `first` up to (not including) `below`."""
    return (
        f"{table}.key = {key} AND ({table}.key, {table}.{column}) >= ({key}, {first}) "
        f"AND ({table}.key, {table}.{column}) < ({key}, {below})"
    )


def long(window: int) -> bool:
    """A window longer than an hour may cover whole hours: it reads them from their totals
    and its old edge by buckets. A shorter one is read by buckets, from the current hour's
    scan reaching back to its first bucket (an hour of buckets at most)."""
    return window > HOUR


def older_joins(
    pairs: Pairs, key: str, bucket: str, bind: Binds, *, only_long: bool = False
) -> tuple[str, list[str]]:
    """LEFT JOIN LATERALs reading each (window, column) over the buckets before `bucket`
    (a bound parameter, the current bucket), and the select list of their sums.

    With `only_long`, hours and old edges are read only for the keys bound as `long_keys`
    (those a window longer than an hour reads); the others' long sums are 0, and no window
    of theirs reads them. A key outside the list skips those scans (a gating filter on
    parameters: no index is probed). With the starter policy only the country keys read a
    long window: 2 index scans fewer per number and range key (tests/store/
    test_hot_path_reads.py)."""
    if not pairs:
        return "", []
    longs = sorted({w for w, _ in pairs if long(w)})
    only = f" AND {key} = ANY({bind('long_keys', 'text[]')})" if only_long and longs else ""
    recent = ", ".join(
        f"sum(CASE WHEN bucket >= {bind(('from', w), 'bigint')} THEN {c} ELSE 0 END) AS {c}_{w}"
        for w, c in pairs
    )
    first = bind("recent", "bigint")
    sql = [
        f" LEFT JOIN LATERAL (SELECT {recent} FROM counters WHERE "
        f"{key_range('counters', 'bucket', key, first, bucket)}) AS recent ON true",
    ]
    sums = {(w, c): f"coalesce(recent.{c}_{w}, 0)" for w, c in pairs}
    if longs:
        hours = ", ".join(
            f"sum(CASE WHEN hour >= {bind(('hours', w), 'bigint')} THEN {c} ELSE 0 END) AS {c}_{w}"
            for w, c in pairs
            if long(w)
        )
        now_hour, first_hour = bind("now_hour", "bigint"), bind("first_hour", "bigint")
        sql.append(
            f" LEFT JOIN LATERAL (SELECT {hours} FROM counter_hours WHERE "
            f"{key_range('counter_hours', 'hour', key, first_hour, now_hour)}{only}) "
            "AS hours ON true"
        )
    for i, w in enumerate(longs):
        columns = ", ".join(f"sum({c}) AS {c}" for v, c in pairs if v == w)
        since, edge = bind(("since", w), "bigint"), bind(("edge", w), "bigint")
        sql.append(
            f" LEFT JOIN LATERAL (SELECT {columns} FROM counters WHERE "
            f"{key_range('counters', 'bucket', key, since, edge)}{only}) AS edge{i} ON true"
        )
        for v, c in pairs:
            if v == w:
                sums[w, c] += f" + coalesce(hours.{c}_{w}, 0) + coalesce(edge{i}.{c}, 0)"
    # bigint, not sum()'s numeric: asyncpg decodes a numeric into a Decimal (~2k
    # instructions each, ~10 per attempt), a bigint straight into an int
    return "".join(sql), [f"({total})::bigint AS {c}_{w}" for (w, c), total in sums.items()]


def older_values(
    clock: BucketClock, now: datetime, bucket: int, windows: set[int]
) -> dict[Hashable, Any]:
    """The bounds `older_joins` binds, for windows ending with bucket `bucket` at `now`:
    per window its first bucket (`since`), where its part of the current hour's scan
    starts (`from`), its old edge's end (`edge`) and its first whole hour (`hours`)."""
    now_hour = bucket - bucket % HOUR
    values: dict[Hashable, Any] = {"now_hour": now_hour}
    froms, hours = [now_hour], [now_hour]
    for w in windows:
        since = clock.oldest(now, w)
        whole = min(-(-since // HOUR) * HOUR, now_hour)  # the first whole hour, if any
        values[("since", w)] = since
        values[("from", w)] = max(since, now_hour) if long(w) else since
        values[("edge", w)] = whole if since < now_hour else since
        values[("hours", w)] = whole
        froms.append(values[("from", w)])
        hours.append(whole)
    values["recent"] = min(froms)
    values["first_hour"] = min(hours)
    return values
