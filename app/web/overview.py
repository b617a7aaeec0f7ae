"""The overview page's numbers, read through the audit stats service: one period against the
one before it, the decisions over time, countries and top denied ranges."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.audit.documents import StatsRow, StatsTotals
from app.services.audit.queries import AuditContext, AuditFilter
from app.services.audit.stats import Breakdown, Bucket, breakdown, roll_for
from app.web.chart import Chart, Point, buckets, chart

Period = Literal["24h", "7d", "30d"]
PERIODS: dict[str, tuple[timedelta, Bucket]] = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
}
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
METRICS = (
    ("attempts", "Attempts", "number"),
    ("allowed", "Allowed", "number"),
    ("denied", "Denied", "number"),
    ("shadowWouldDeny", "Shadow would-deny", "number"),
    ("successful", "Verified", "number"),
    ("conversionRate", "Conversion", "percent"),
    ("spendAllowed", "Spend allowed", "money"),
    ("spendDenied", "Spend denied (money saved)", "money"),
)


@dataclass(frozen=True, slots=True)
class Metric:
    label: str
    value: Any
    previous: Any
    change: float | None
    kind: str


@dataclass(frozen=True, slots=True)
class Overview:
    period: str
    since: datetime
    until: datetime
    metrics: list[Metric]
    chart: Chart
    countries: list[dict[str, Any]]
    ranges: list[dict[str, Any]]


async def overview(
    conn: AsyncConnection, *, ctx: AuditContext, period: str, roll: bool = True
) -> Overview:
    """Two reads of the stats service: the period (per bucket and per country, its ranges)
    and the period before it (totals only, not logged again). `roll` False:
    `refresh_rollup` ran first on the writer's connection, and `conn` may be a reader's."""
    width, bucket = PERIODS.get(period, PERIODS["24h"])
    until = ctx.at
    since = until - width
    now = await _breakdown(conn, ctx, since, until, bucket=bucket, top=10, roll=roll)
    quiet = dataclasses.replace(ctx, logged=False)
    before = await _breakdown(conn, quiet, since - width, since, bucket=None, top=0, roll=roll)
    return Overview(
        period=period if period in PERIODS else "24h",
        since=since,
        until=until,
        metrics=metrics(now.totals, before.totals),
        chart=chart(points(now.by_bucket, since, until, _STEP[bucket])),
        countries=[dict(row) for row in now.by_group],
        ranges=[dict(row) for row in now.ranges],
    )


async def _breakdown(
    conn: AsyncConnection,
    ctx: AuditContext,
    since: datetime,
    until: datetime,
    *,
    bucket: Bucket | None,
    top: int,
    roll: bool,
) -> Breakdown:
    return await breakdown(
        conn=conn,
        ctx=ctx,
        filters=AuditFilter(since=since, until=until),
        bucket=bucket,
        group_by="country" if bucket else None,
        range_digits=6,
        top=top,
        roll=roll,
    )


async def refresh_rollup(
    writer: AsyncEngine, reader: AsyncEngine, *, period: str, at: datetime
) -> None:
    """The hourly rollup made exact for `overview(..., roll=False)` at `at`: read on the
    reader, stored through the writer (`roll_for`)."""
    width, bucket = PERIODS.get(period, PERIODS["24h"])
    since = at - width
    current = AuditFilter(since=since, until=at)
    previous = AuditFilter(since=since - width, until=since)
    await roll_for(writer, reader, current, bucket=bucket, now=at)
    await roll_for(writer, reader, previous, bucket=None, now=at)


def metrics(current: StatsTotals, previous: StatsTotals) -> list[Metric]:
    now, before = dict(current), dict(previous)
    return [
        Metric(label, now[key], before[key], change(_size(now[key]), _size(before[key])), kind)
        for key, label, kind in METRICS
    ]


def _size(value: Any) -> float | None:
    if isinstance(value, dict):
        return float(sum(value.values()))
    return None if value is None else float(value)


def change(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or (now == 0 and before == 0):
        return None
    return float("inf") if before == 0 else (now - before) / before


def points(
    series: list[StatsRow], since: datetime, until: datetime, step: timedelta
) -> list[Point]:
    by_start = {row["bucket"]: row for row in series if row["bucket"] is not None}
    out = []
    for start in buckets(since.astimezone(UTC), until.astimezone(UTC), step):
        row = by_start.get(start)
        if row is None:
            out.append(Point(start, 0, 0, 0, 0.0))
            continue
        would = min(row["shadowWouldDeny"], row["allowed"])
        spend = float(sum(row["spendAllowed"].values()))
        out.append(Point(start, row["denied"], would, row["allowed"] - would, spend))
    return out


COUNTRY_SORTS = {
    "attempts": "Attempts",
    "conversion": "Conversion",
    "deny": "Deny %",
    "spend": "Spend",
}


@dataclass(frozen=True, slots=True)
class CountryRow:
    country: str
    attempts: int
    conversion: float | None
    deny_rate: float | None
    spend: dict[str, float]


def country_rows(rows: list[dict[str, Any]], sort: str) -> list[CountryRow]:
    """The country table, largest first by the chosen column."""
    out = [
        CountryRow(
            country=str(row["group"] or "unknown"),
            attempts=row["attempts"],
            conversion=row["conversionRate"],
            deny_rate=row["denied"] / row["attempts"] if row["attempts"] else None,
            spend=row["spendAllowed"],
        )
        for row in rows
    ]
    keys = {
        "attempts": lambda r: r.attempts,
        "conversion": lambda r: -1.0 if r.conversion is None else r.conversion,
        "deny": lambda r: -1.0 if r.deny_rate is None else r.deny_rate,
        "spend": lambda r: sum(r.spend.values()),
    }
    return sorted(out, key=keys.get(sort, keys["attempts"]), reverse=True)
