"""Verified history per counter key, read from the stored verifications for adaptive limits.

One statement per baseline: the attempts that ended SUCCESSFUL, grouped by the counter key
they would be counted under (the SQL spelling of `app.rules.aggregates.CounterKey`), only
the keys with more than a threshold. It reads the verifications, not the counters: those
are kept 8 days by default (a 14-day baseline would not fit), hold only the keys the policy
counts, and in Redis cannot be listed without a scan; a result delivered twice is one row.
Off the request path (services/baselines.py refreshes it in the background).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, cast, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import verifications

SUCCESSFUL = "SUCCESSFUL"
_PREFIXES = {"number": "number", "country": "country", "calling_code": "cc"}
_PREFIXES |= {"reference": "ref", "application": "app"}


@dataclass(frozen=True, slots=True)
class BaselineQuery:
    """Successes under one kind of counter key, requested in `spans` ([start, end) each),
    for keys with more than `above` of them."""

    key: str
    digits: int | None
    spans: Sequence[tuple[datetime, datetime]]
    above: float


def key_expression(key: str, digits: int | None) -> Any:
    """The counter key of a stored verification, as `CounterKey.value` spells it."""
    v = verifications.c
    if key == "global":
        return literal("global")
    if key == "range":
        width = digits or 0
        name = f"range{width}:"
        if width > 0:
            return literal(name) + func.substr(v.number, 1, width + 1)
        kept = func.length(v.number) + width
        return case((kept > 1, literal(name) + func.substr(v.number, 1, kept)), else_=None)
    columns = {
        "number": v.number,
        "country": v.country,
        "calling_code": cast(v.calling_code, String),
        "reference": case((v.reference == "", None), else_=v.reference),
        "application": func.lower(v.app_key),
    }
    return literal(f"{_PREFIXES[key]}:") + columns[key]


async def verified_counts(conn: AsyncConnection, query: BaselineQuery) -> dict[str, int]:
    """Key -> successes in the spans, for the keys above the threshold."""
    v = verifications.c
    key = key_expression(query.key, query.digits).label("key")
    within = or_(*(and_(v.requested_at >= a, v.requested_at < b) for a, b in query.spans))
    stmt = (
        select(key, func.count().label("verified"))
        .where(v.status == SUCCESSFUL, within)
        .group_by(key)
        .having(func.count() > query.above)
    )
    rows = await conn.execute(stmt)
    return {row.key: int(row.verified) for row in rows if row.key is not None}


async def verified_after(
    conn: AsyncConnection, key: str, digits: int | None, after: datetime
) -> list[tuple[datetime, str]]:
    """(request time, key) of each success requested after `after` (ahead of a refresh's
    clock: another worker's, or stored while the refresh began). Few rows, by index."""
    v = verifications.c
    column = key_expression(key, digits).label("key")
    stmt = select(v.requested_at, column).where(v.status == SUCCESSFUL, v.requested_at > after)
    rows = await conn.execute(stmt)
    return [(aware(row.requested_at), row.key) for row in rows if row.key is not None]


async def first_attempts(
    conn: AsyncConnection, key: str, digits: int | None, since: datetime, now: datetime
) -> dict[str, datetime]:
    """Key -> its first attempt requested in [since, now], allowed or denied (for a
    `verified` condition's `min_history`). Every key with an attempt in the span is listed:
    one row per country, but one per block for a range key."""
    spans = await attempt_spans(conn, key, digits, since, now)
    return {name: first for name, (first, _) in spans.items()}


async def attempt_spans(
    conn: AsyncConnection, key: str, digits: int | None, since: datetime, now: datetime
) -> dict[str, tuple[datetime, datetime]]:
    """Key -> its first and last attempt requested in [since, now], allowed or denied. A
    range scan of `ix_verifications_requested_at_id`: cheap for the span since the last
    refresh, a scan of the whole window otherwise."""
    v = verifications.c
    column = key_expression(key, digits).label("key")
    first, last = func.min(v.requested_at).label("first"), func.max(v.requested_at).label("last")
    stmt = (
        select(column, first, last)
        .where(v.requested_at >= since, v.requested_at <= now)
        .group_by(column)
    )
    rows = await conn.execute(stmt)
    return {row.key: (aware(row.first), aware(row.last)) for row in rows if row.key is not None}


def aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; the store keeps UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def last(window: timedelta, now: datetime) -> list[tuple[datetime, datetime]]:
    """The last `window`, up to and including `now`."""
    return [(now - window, now + timedelta(microseconds=1))]


def same_hour(days: int, now: datetime) -> list[tuple[datetime, datetime]]:
    """The hour of `now` (UTC) on each of the `days` days before."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    starts = [hour - timedelta(days=k) for k in range(1, days + 1)]
    return [(start, start + timedelta(hours=1)) for start in starts]
