"""What alerts observe, read from the stored verifications: one grouped query per window.

Each metric is a sum over the window's rows, grouped by the alert's key (a range is the
number's leading digits), with the attempts it is taken over. Denied counts the rules'
denials: not the fallback's (an overloaded guard denied those) nor a containment's.
Conversion (and a key's deadness) is taken over the settled allowed attempts only: those with
a result, or requested by `settled_before` (old enough that their result would have come);
a result still on its way says nothing yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import verifications as v

SUCCESSFUL = "SUCCESSFUL"


@dataclass(frozen=True, slots=True)
class Measured:
    total: float
    attempts: int


def key_column(key: str, digits: int | None) -> ColumnElement[Any]:
    if key == "range":
        return func.substr(v.c.number, 1, 1 + (digits or 0))
    if key == "application":
        return func.lower(v.c.app_key)
    return {"country": v.c.country, "number": v.c.number}[key]


def _one(condition: ColumnElement[bool], then: ColumnElement[Any] | int = 1) -> Any:
    return func.sum(case((condition, then), else_=0))


def _settled(settled_before: datetime | None) -> ColumnElement[bool]:
    """An attempt whose result came, or that is old enough that it would have."""
    if settled_before is None:
        return literal(True)
    return or_(v.c.status.is_not(None), v.c.requested_at <= settled_before)


def _measure(metric: str, settled_before: datetime | None = None) -> tuple[Any, Any]:
    """(the metric's sum, the attempts it is taken over)."""
    allowed = v.c.action == "allow"
    verified = v.c.status == SUCCESSFUL
    # A fallback answer (a missed deadline, the database away) says nothing about the key; a
    # contained one was counted by the alert that contained it (one number's abuse must not
    # go on to fill the range around it).
    denied = and_(
        v.c.action == "deny",
        v.c.decided_by.is_distinct_from("fallback"),
        v.c.reason.is_distinct_from("contained"),
    )
    if metric == "denied":
        return _one(denied), func.count()
    if metric == "denied_spend":
        return _one(denied, func.coalesce(v.c.price_amount, 0.0)), func.count()
    if metric == "spend":
        return _one(allowed, func.coalesce(v.c.price_amount, 0.0)), func.count()
    if metric == "unverified":
        return _one(
            and_(allowed, or_(v.c.status.is_(None), v.c.status != SUCCESSFUL))
        ), func.count()
    if metric == "conversion":
        return _one(and_(allowed, verified)), _one(and_(allowed, _settled(settled_before)))
    return func.count(), func.count()


async def measure(
    conn: AsyncConnection,
    *,
    metric: str,
    key: str,
    digits: int | None,
    windows: Sequence[tuple[datetime, datetime]],
    min_price: float | None = None,
    settled_before: datetime | None = None,
) -> dict[str, Measured]:
    """Totals by key value over the union of `windows` ([since, until) each), of the attempts
    priced at least `min_price` if given (conversion: over those settled by
    `settled_before`)."""
    total, attempts = _measure(metric, settled_before)
    within = or_(*(and_(v.c.requested_at >= a, v.c.requested_at < b) for a, b in windows))
    if min_price is not None:
        within = and_(within, v.c.price_amount >= min_price)
    if key == "global":
        stmt = select(
            literal("global").label("value"), total.label("total"), attempts.label("attempts")
        )
        rows = [row for row in (await conn.execute(stmt.where(within))).all() if row.attempts]
    else:
        column = key_column(key, digits).label("value")
        stmt = (
            select(column, total.label("total"), attempts.label("attempts"))
            .where(within, column.is_not(None))
            .group_by(column)
        )
        rows = list((await conn.execute(stmt)).all())
    return {
        str(row.value): Measured(float(row.total or 0), int(row.attempts or 0))
        for row in rows
        if row.value
    }


async def alive_keys(
    conn: AsyncConnection,
    *,
    key: str,
    digits: int | None,
    values: Sequence[str],
    since: datetime,
    until: datetime,
    conversion: float,
    settled_before: datetime,
) -> set[str]:
    """Which of `values` had attempts in [since, until) verified, at least `conversion` of
    their allowed ones settled by `settled_before` (a pending result does not count)."""
    if not values:
        return set()
    verified, allowed = _measure("conversion", settled_before)
    column = key_column(key, digits).label("value")
    stmt = (
        select(column)
        .where(v.c.requested_at >= since, v.c.requested_at < until, column.in_(list(values)))
        .group_by(column)
        .having(verified > 0, verified >= conversion * allowed)
    )
    return {str(value) for value in (await conn.execute(stmt)).scalars()}


async def any_verified(conn: AsyncConnection, *, since: datetime, until: datetime) -> bool:
    """Whether any attempt requested in [since, until) has verified."""
    stmt = (
        select(v.c.id)
        .where(v.c.status == SUCCESSFUL, v.c.requested_at >= since, v.c.requested_at < until)
        .limit(1)
    )
    return (await conn.execute(stmt)).first() is not None
