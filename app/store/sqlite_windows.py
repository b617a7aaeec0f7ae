"""A read of keys' windows on SQLite, from hour totals and edge buckets.

The same parts as on PostgreSQL (store/pg_windows.py, which computes their bounds): per
window longer than an hour its old edge's buckets and its whole hours from `counter_hours`,
and the current hour's buckets up to the current one included (one part shared by every
window, reaching back to the first bucket of the windows of an hour or less). Each part is
its own range of the primary key (`key IN (…) AND bucket >= … AND bucket < …`, which
SQLite serves by seeking each key's range), aggregated on its own; a part's columns are
zero for the windows it is no part of, so a bucket in two parts never counts twice for one
window, and the rows of a key add up to its windows' sums.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.store.counter_model import VALUE_COLUMNS
from app.store.pg_windows import long


def windows_statement(windows: list[int], count: int) -> Any:
    """Rows of (key, then for each window in order its sum of each of VALUE_COLUMNS in
    order): one per key and part, to be added up per key (`summed`). Each part aggregates
    its own range in primary-key order (no sorting, no rows carried between parts).
    Parameters: key_0…, current, recent, first_hour, now_hour, and per window from_W,
    since_W, edge_W, hours_W (pg_windows.older_values)."""
    keys = ", ".join(f":key_{i}" for i in range(count))
    where = f"WHERE key IN ({keys}) AND"

    def part(sums: list[str], table: str, bounds: str) -> str:
        return f"SELECT key, {', '.join(sums)} FROM {table} {where} {bounds} GROUP BY key"

    def each(sum_of: Any) -> list[str]:
        return [sum_of(w, c) for w in windows for c in VALUE_COLUMNS]

    parts = [
        part(
            each(lambda w, c: f"sum(CASE WHEN bucket >= :from_{w} THEN {c} ELSE 0 END)"),
            "counters",
            "bucket >= :recent AND bucket <= :current",
        )
    ]
    longs = [w for w in windows if long(w)]
    if longs:
        parts.append(
            part(
                each(
                    lambda w, c: (
                        f"sum(CASE WHEN hour >= :hours_{w} THEN {c} ELSE 0 END)" if long(w) else "0"
                    )
                ),
                "counter_hours",
                "hour >= :first_hour AND hour < :now_hour",
            )
        )
    for edge in longs:
        parts.append(
            part(
                each(lambda w, c, edge=edge: f"sum({c})" if w == edge else "0"),
                "counters",
                f"bucket >= :since_{edge} AND bucket < :edge_{edge}",
            )
        )
    return text(" UNION ALL ".join(parts))


def summed(rows: Any) -> dict[str, list[int]]:
    """Per key, its parts' rows added up column by column (the key first)."""
    out: dict[str, list[int]] = {}
    for row in rows:
        found = out.get(row[0])
        if found is None:
            out[row[0]] = [row[0], *(int(v or 0) for v in row[1:])]
        else:
            for j in range(1, len(found)):
                found[j] += int(row[j] or 0)
    return out


def window_parameters(values: dict[Any, int], windows: list[int]) -> dict[str, Any]:
    """pg_windows.older_values' bounds under this statement's parameter names."""
    params: dict[str, Any] = {name: values[name] for name in ("recent", "first_hour", "now_hour")}
    for w in windows:
        for part in ("from", "since", "edge", "hours"):
            params[f"{part}_{w}"] = values[(part, w)]
    return params
