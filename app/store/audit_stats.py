"""Audit statistics in SQL: counts and spend per time bucket and group, denied ranges, shadow rules.

Time buckets are computed in the database, portably: date_trunc on PostgreSQL, strftime on
SQLite; both in UTC. Units and widths are validated constants, rendered as literals so
that GROUP BY can repeat the exact select expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    and_,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from app.store.audit import (
    AuditFilter,
    conditions,
    dimension_conditions,
    matches,
    verifications,
)
from app.store.tables import country_rollup, range_rollup, rollup, shadow_rollup

Bucket = Literal["minute", "hour", "day"]
GroupBy = Literal["country", "method", "rule", "reason"]

_SQLITE_FORMAT = {
    "minute": "%Y-%m-%dT%H:%M:00",
    "hour": "%Y-%m-%dT%H:00:00",
    "day": "%Y-%m-%dT00:00:00",
}
MATCH_SLACK = timedelta(minutes=5)
ROLLED_RANGE_DIGITS = 6  # the ranges `stats_range_hourly` holds (see stats_rollup)
_ONE = literal_column("1", Integer)
FINAL = ("SUCCESSFUL", "FAIL", "DENIED", "ABORTED", "ERROR")
MEASURES = (
    "attempts",
    "allowed",
    "denied",
    "shadow_would_deny",
    "completed",
    "successful",
    "spend_allowed",
    "spend_denied",
)
SHADOW_MEASURES = (
    "matches",
    "would_deny",
    "would_deny_allowed",
    "would_deny_successful",
    "spend_would_save",
)


@dataclass(slots=True, kw_only=True)  # not frozen: cheaper to build, and there may be many
class StatsCell:
    """The counts and spend of one (bucket, group, currency) cell, as `grouped` reads them.

    `bucket` is the bucket's start as the database gives it (SQLite: ISO text, naive UTC).
    """

    currency: str | None
    bucket: datetime | str | None = None
    grp: str | None = None
    attempts: int
    allowed: int | None
    denied: int | None
    shadow_would_deny: int | None
    completed: int | None
    successful: int | None
    spend_allowed: float | None
    spend_denied: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowCell:
    """What one shadow rule would have changed, in one currency."""

    rule: str
    currency: str | None
    matches: int
    would_deny: int | None
    would_deny_allowed: int | None
    would_deny_successful: int | None
    spend_would_save: float | None


@dataclass(frozen=True, slots=True)
class DeniedRange:
    """A number range (`+` and its first digits) and how many attempts in it were denied."""

    range: str
    denied: int


def bucket_expr(dialect: str, bucket: Bucket, at: ColumnElement[Any]) -> ColumnElement[Any]:
    """The start of the bucket holding `at` (a naive UTC timestamp or an ISO string)."""
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), at)
        return func.date_trunc(literal_column(f"'{bucket}'"), utc)
    return func.strftime(literal_column(f"'{_SQLITE_FORMAT[bucket]}'"), at)


def group_expr(c: ReadOnlyColumnCollection[str, Any], group_by: GroupBy) -> ColumnElement[Any]:
    """The grouping column; works on `verifications` and on the rollups alike."""
    if group_by == "rule":
        return func.coalesce(c.rule_name, c.decided_by)
    column: ColumnElement[Any] = c[group_by]
    return column


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """COUNT(*) FILTER (WHERE …): PostgreSQL and SQLite ≥ 3.30; cheaper than SUM(CASE …)."""
    return func.count().filter(condition)


def measures(c: ReadOnlyColumnCollection[str, Any]) -> list[ColumnElement[Any]]:
    """The counts and spend of a set of verifications (also what `stats_hourly` stores)."""
    allowed, denied = c.action == "allow", c.action == "deny"
    return [
        func.count().label("attempts"),
        _count(allowed).label("allowed"),
        _count(denied).label("denied"),
        _count(and_(allowed, c.shadow_deny.is_(True))).label("shadow_would_deny"),
        _count(c.status.in_(FINAL)).label("completed"),
        _count(c.status == "SUCCESSFUL").label("successful"),
        func.sum(c.price_amount).filter(allowed).label("spend_allowed"),
        func.sum(c.price_amount).filter(denied).label("spend_denied"),
    ]


def _rolled_measures(table: Table) -> list[ColumnElement[Any]]:
    return [func.sum(table.c[name]).label(name) for name in MEASURES]


def rollable(f: AuditFilter, bucket: Bucket | None) -> bool:
    """Whether `stats_hourly` can answer: hour or coarser buckets, filters on its dimensions."""
    per_row = (f.number, f.number_prefix)
    return bucket != "minute" and all(v is None for v in per_row) and f.mode != "shadow"


def _rolled_conditions(table: Table, f: AuditFilter) -> list[ColumnElement[bool]]:
    """A filter on a rollup: hour-aligned times (see rollable) and the shared dimensions."""
    return [*dimension_conditions(table.c, f), *_hours_of(table, f)]


def _hours_of(table: Table, f: AuditFilter) -> list[ColumnElement[bool]]:
    c, out = table.c, []
    if f.since is not None:
        out.append(c.hour >= f.since)
    if f.until is not None:
        out.append(c.hour < f.until)
    return out


def _country_only(f: AuditFilter) -> bool:
    """No filter but the time and the country: the narrow rollups can answer."""
    others = (f.number, f.number_prefix, f.method, f.action, f.reason, f.rule, f.mode)
    return all(value is None for value in (*others, f.status, f.application))


def _country_of(table: Table, f: AuditFilter) -> list[ColumnElement[bool]]:
    return [] if f.country is None else [table.c.country == f.country]


def _rollup_for(f: AuditFilter, group_by: GroupBy | None) -> Table:
    """The narrowest rollup holding the filter's and the grouping's dimensions."""
    return country_rollup if group_by in (None, "country") and _country_only(f) else rollup


async def grouped(
    conn: AsyncConnection,
    f: AuditFilter,
    *,
    bucket: Bucket | None,
    group_by: GroupBy | None,
    rolled: bool = False,
) -> list[StatsCell]:
    """One row per (bucket, group, currency) with the counts and spend of that cell; from
    `verifications`, or with `rolled` from `stats_hourly` (hour-aligned, refreshed window)."""
    table = _rollup_for(f, group_by) if rolled else cast(Table, verifications)
    at = table.c.hour if rolled else table.c.requested_at
    keys: list[ColumnElement[Any]] = [table.c.price_currency.label("currency")]
    if bucket is not None:
        keys.append(bucket_expr(conn.dialect.name, bucket, at).label("bucket"))
    if group_by is not None:
        keys.append(group_expr(table.c, group_by).label("grp"))
    if table is country_rollup:
        where = [*_hours_of(table, f), *_country_of(table, f)]
        stmt = select(*keys, *_rolled_measures(table)).where(*where)
    elif rolled:
        stmt = select(*keys, *_rolled_measures(table)).where(*_rolled_conditions(table, f))
    else:
        stmt = select(*keys, *measures(table.c)).where(*conditions(f))
    return [StatsCell(**row) for row in (await conn.execute(stmt.group_by(*keys))).mappings()]


def range_of(number: ColumnElement[Any], digits: int) -> ColumnElement[Any]:
    """A number's range: `+` and its first `digits` digits (of a rolled range, its prefix)."""
    return func.substr(number, 1, literal_column(str(int(digits) + 1), Integer))


async def top_denied_ranges(
    conn: AsyncConnection, f: AuditFilter, *, digits: int, limit: int | None
) -> list[DeniedRange]:
    """Number ranges (`+` and the first `digits` digits) with the most denied attempts
    (all of them without `limit`)."""
    c = verifications.c
    prefix = range_of(c.number, digits)
    denied = func.count().label("denied")
    stmt = (
        select(prefix.label("range"), denied)
        # A literal, not a parameter, so that the partial index on denied rows applies.
        .where(*conditions(f), c.action == literal_column("'deny'"), c.number.is_not(None))
        .group_by(prefix)
        .order_by(denied.desc(), prefix)
        .limit(limit)
    )
    return [DeniedRange(row.range, int(row.denied)) for row in await conn.execute(stmt)]


def ranges_rollable(f: AuditFilter, digits: int) -> bool:
    """Whether `stats_range_hourly` can answer: short enough ranges, no filter but country."""
    return digits <= ROLLED_RANGE_DIGITS and _country_only(f)


async def top_denied_ranges_of(
    conn: AsyncConnection, parts: list[tuple[AuditFilter, bool]], *, digits: int, limit: int
) -> list[DeniedRange]:
    """`top_denied_ranges` over a window in parts, in one statement: the rolled parts (hour
    aligned, see ranges_rollable) from `stats_range_hourly`, the others from the rows."""
    c, r = verifications.c, range_rollup.c
    pieces = [
        select(range_of(r.range, digits).label("range"), r.denied.label("denied")).where(
            *_hours_of(range_rollup, f), *_country_of(range_rollup, f)
        )
        if rolled
        else select(range_of(c.number, digits).label("range"), _ONE.label("denied")).where(
            *conditions(f), c.action == literal_column("'deny'"), c.number.is_not(None)
        )
        for f, rolled in parts
    ]
    each = union_all(*pieces).subquery()
    denied = func.sum(each.c.denied).label("denied")
    stmt = (
        select(each.c.range, denied)
        .group_by(each.c.range)
        .order_by(denied.desc(), each.c.range)
        .limit(limit)
    )
    return [DeniedRange(row.range, int(row.denied)) for row in await conn.execute(stmt)]


def matched_within(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """Matches are stamped with their request's time: narrow them first, then join by id."""
    out: list[ColumnElement[bool]] = []
    if since is not None:
        out.append(matches.c.matched_at >= since - MATCH_SLACK)
    if until is not None:
        out.append(matches.c.matched_at < until + MATCH_SLACK)
    return out


def shadow_measures(
    c: ReadOnlyColumnCollection[str, Any], m: ReadOnlyColumnCollection[str, Any]
) -> list[ColumnElement[Any]]:
    """Per shadow rule: matches, extra denies, their spend and later successes (also what
    `stats_shadow_hourly` stores)."""
    extra = and_(m.action == "deny", c.action == "allow")
    return [
        func.count().label("matches"),
        _count(m.action == "deny").label("would_deny"),
        _count(extra).label("would_deny_allowed"),
        _count(and_(extra, c.status == "SUCCESSFUL")).label("would_deny_successful"),
        func.sum(c.price_amount).filter(extra).label("spend_would_save"),
    ]


def matched_with_verification() -> Any:
    return matches.join(verifications, matches.c.verification_id == verifications.c.id)


async def shadow_rules(
    conn: AsyncConnection, f: AuditFilter, *, rolled: bool = False
) -> list[ShadowCell]:
    """Per shadow rule and currency, from the matches or with `rolled` from their rollup."""
    if rolled:
        r = shadow_rollup.c
        keys = (r.shadow_rule.label("rule"), r.price_currency.label("currency"))
        sums = [func.sum(r[name]).label(name) for name in SHADOW_MEASURES]
        stmt = select(*keys, *sums).where(*_rolled_conditions(shadow_rollup, f))
    else:
        c, m = verifications.c, matches.c
        keys = (m.rule_name.label("rule"), c.price_currency.label("currency"))
        stmt = (
            select(*keys, *shadow_measures(c, m))
            .select_from(matched_with_verification())
            .where(*conditions(f), *matched_within(f.since, f.until))
        )
    return [ShadowCell(**row) for row in (await conn.execute(stmt.group_by(*keys))).mappings()]
