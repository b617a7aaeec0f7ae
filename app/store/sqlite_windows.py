"""A read of keys' windows on SQLite, from hour totals and edge buckets.

The same parts as on PostgreSQL (store/pg_windows.py, which computes their bounds): per
window longer than an hour its old edge's buckets and its whole hours from `counter_hours`,
and the current hour's buckets up to the current one included (one part shared by every
window, reaching back to the first bucket of the windows of an hour or less). Each part is
its own range of the primary key (`key IN (…) AND bucket >= … AND bucket < …`, which
SQLite serves by seeking each key's range), tagged with its number so that a window sums
only its own parts, and a bucket in two parts is never counted twice for one window.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.store.counter_model import VALUE_COLUMNS
from app.store.pg_windows import long

RECENT, HOURS = 0, 1
"""The parts' tags; window i's edge is tagged 2 + i."""


def windows_statement(windows: list[int], count: int) -> Any:
    """Per key: the key, then for each window in order its sum of each of VALUE_COLUMNS
    in order (the layout `SqlCounters.read` reads). Parameters: key_0…, current, recent,
    first_hour, now_hour, and per window from_W, since_W, edge_W, hours_W
    (pg_windows.older_values)."""
    keys = ", ".join(f":key_{i}" for i in range(count))
    names = ", ".join(VALUE_COLUMNS)
    parts = [
        f"SELECT key, bucket AS at, {RECENT} AS part, {names} FROM counters "
        f"WHERE key IN ({keys}) AND bucket >= :recent AND bucket <= :current",
    ]
    if any(long(w) for w in windows):
        parts.append(
            f"SELECT key, hour, {HOURS}, {names} FROM counter_hours "
            f"WHERE key IN ({keys}) AND hour >= :first_hour AND hour < :now_hour"
        )
    sums = []
    for i, w in enumerate(windows):
        inside = f"(part = {RECENT} AND at >= :from_{w})"
        if long(w):
            parts.append(
                f"SELECT key, bucket, {2 + i}, {names} FROM counters "
                f"WHERE key IN ({keys}) AND bucket >= :since_{w} AND bucket < :edge_{w}"
            )
            inside += f" OR (part = {HOURS} AND at >= :hours_{w}) OR part = {2 + i}"
        sums += [f"sum(CASE WHEN {inside} THEN {c} ELSE 0 END) AS {c}_{w}" for c in VALUE_COLUMNS]
    union = " UNION ALL ".join(parts)
    return text(f"SELECT key, {', '.join(sums)} FROM ({union}) GROUP BY key")


def window_parameters(values: dict[Any, int], windows: list[int]) -> dict[str, Any]:
    """pg_windows.older_values' bounds under this statement's parameter names."""
    params: dict[str, Any] = {name: values[name] for name in ("recent", "first_hour", "now_hour")}
    for w in windows:
        for part in ("from", "since", "edge", "hours"):
            params[f"{part}_{w}"] = values[(part, w)]
    return params
