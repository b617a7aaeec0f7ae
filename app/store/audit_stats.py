"""Audit statistics in SQL: counts and spend per time bucket and group, denied ranges, shadow rules.

Time buckets are computed in the database, portably: date_trunc on PostgreSQL, strftime on
SQLite; both in UTC. Units and widths are validated constants, rendered as literals so
that GROUP BY can repeat the exact select expression.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Integer, and_, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.audit import AuditFilter, conditions, matches, verifications

Bucket = Literal["minute", "hour", "day"]
GroupBy = Literal["country", "method", "rule", "reason"]

_SQLITE_FORMAT = {
    "minute": "%Y-%m-%dT%H:%M:00",
    "hour": "%Y-%m-%dT%H:00:00",
    "day": "%Y-%m-%dT00:00:00",
}
MATCH_SLACK = timedelta(minutes=5)
FINAL = ("SUCCESSFUL", "FAIL", "DENIED", "ABORTED", "ERROR")


def bucket_expr(dialect: str, bucket: Bucket) -> ColumnElement[Any]:
    """The start of the requested_at bucket (a naive UTC timestamp or an ISO string)."""
    at = verifications.c.requested_at
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), at)
        return func.date_trunc(literal_column(f"'{bucket}'"), utc)
    return func.strftime(literal_column(f"'{_SQLITE_FORMAT[bucket]}'"), at)


def group_expr(group_by: GroupBy) -> ColumnElement[Any]:
    c = verifications.c
    if group_by == "rule":
        return func.coalesce(c.rule_name, c.decided_by)
    column: ColumnElement[Any] = {"country": c.country, "method": c.method, "reason": c.reason}[
        group_by
    ]
    return column


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """COUNT(*) FILTER (WHERE …): PostgreSQL and SQLite ≥ 3.30; cheaper than SUM(CASE …)."""
    return func.count().filter(condition)


def _measures() -> list[ColumnElement[Any]]:
    c = verifications.c
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


async def grouped(
    conn: AsyncConnection, f: AuditFilter, *, bucket: Bucket | None, group_by: GroupBy | None
) -> list[dict[str, Any]]:
    """One row per (bucket, group, currency) with the counts and spend of that cell."""
    keys: list[ColumnElement[Any]] = [verifications.c.price_currency.label("currency")]
    if bucket is not None:
        keys.append(bucket_expr(conn.dialect.name, bucket).label("bucket"))
    if group_by is not None:
        keys.append(group_expr(group_by).label("grp"))
    stmt = select(*keys, *_measures()).where(*conditions(f)).group_by(*keys)
    return [dict(row) for row in (await conn.execute(stmt)).mappings()]


async def top_denied_ranges(
    conn: AsyncConnection, f: AuditFilter, *, digits: int, limit: int
) -> list[dict[str, Any]]:
    """Number ranges (`+` and the first `digits` digits) with the most denied attempts."""
    c = verifications.c
    prefix = func.substr(c.number, 1, literal_column(str(int(digits) + 1), Integer))
    denied = func.count().label("denied")
    stmt = (
        select(prefix.label("range"), denied)
        .where(*conditions(f), c.action == "deny", c.number.is_not(None))
        .group_by(prefix)
        .order_by(denied.desc(), prefix)
        .limit(limit)
    )
    return [dict(row) for row in (await conn.execute(stmt)).mappings()]


def _matched_within(f: AuditFilter) -> list[ColumnElement[bool]]:
    """Matches are stamped with their request's time: narrow them first, then join by id."""
    out: list[ColumnElement[bool]] = []
    if f.since is not None:
        out.append(matches.c.matched_at >= f.since - MATCH_SLACK)
    if f.until is not None:
        out.append(matches.c.matched_at < f.until + MATCH_SLACK)
    return out


async def shadow_rules(conn: AsyncConnection, f: AuditFilter) -> list[dict[str, Any]]:
    """Per shadow rule and currency: matches, extra denies, their spend and later successes."""
    c, m = verifications.c, matches.c
    extra = and_(m.action == "deny", c.action == "allow")
    keys = (m.rule_name.label("rule"), c.price_currency.label("currency"))
    stmt = (
        select(
            *keys,
            func.count().label("matches"),
            _count(m.action == "deny").label("would_deny"),
            _count(extra).label("would_deny_allowed"),
            func.sum(c.price_amount).filter(extra).label("spend_would_save"),
            _count(and_(extra, c.status == "SUCCESSFUL")).label("would_deny_successful"),
        )
        .select_from(matches.join(verifications, m.verification_id == c.id))
        .where(*conditions(f), *_matched_within(f))
        .group_by(*keys)
    )
    return [dict(row) for row in (await conn.execute(stmt)).mappings()]
