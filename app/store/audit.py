"""Audit reads: search filters, keyset pages (newest first), look-ups, timelines, the audit log.

Pages are ordered by (requested_at, id) descending; a cursor is the last row's pair, so rows
that arrive later (newer) never shift a page that was already handed out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from app.store.audit_rows import (
    AuditLogEntry,
    RuleAtRevision,
    ShadowMatch,
    StoredCallback,
    Verification,
)
from app.store.models import (
    AuditLogRow,
    CallbackRow,
    RuleRevisionRow,
    VerificationMatchRow,
    VerificationRow,
)

verifications = VerificationRow.__table__
matches = VerificationMatchRow.__table__
callbacks = CallbackRow.__table__
revisions = RuleRevisionRow.__table__
audit_log = AuditLogRow.__table__

_HEAVY = {"decision", "answer"}
SUMMARY_COLUMNS = [col for col in verifications.c if col.name not in _HEAVY]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Search filters; `since` is inclusive, `until` exclusive, all others are equalities."""

    since: datetime | None = None
    until: datetime | None = None
    number: str | None = None
    number_prefix: str | None = None
    country: str | None = None
    method: str | None = None
    action: str | None = None
    reason: str | None = None
    rule: str | None = None
    mode: str | None = None
    status: str | None = None
    application: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row handed out: the next page starts strictly after (older than) it."""

    requested_at: datetime
    id: str


def conditions(f: AuditFilter) -> list[ColumnElement[bool]]:
    """WHERE clauses for a filter; only verifications that had a request event are listed."""
    c = verifications.c
    out: list[ColumnElement[bool]] = [c.requested_at.is_not(None)]
    if f.since is not None:
        out.append(c.requested_at >= f.since)
    if f.until is not None:
        out.append(c.requested_at < f.until)
    if f.number is not None:
        out.append(c.number == f.number)
    if f.number_prefix is not None:
        out.extend(_prefix(f.number_prefix))
    out.extend(dimension_conditions(c, f))
    if f.mode == "shadow":
        shadow = matches.c.verification_id == c.id
        if f.rule is not None:
            shadow = and_(shadow, matches.c.rule_name == f.rule)
        out.append(exists().where(shadow))
    return out


def dimension_conditions(
    c: ReadOnlyColumnCollection[str, Any], f: AuditFilter
) -> list[ColumnElement[bool]]:
    """The filters on columns that verifications and the stats rollups share (all but the
    time, the number and a shadow rule)."""
    equalities = (
        (c.country, f.country),
        (c.method, f.method),
        (c.action, f.action),
        (c.reason, f.reason),
        (c.app_key, f.application),
    )
    out = [column == value for column, value in equalities if value is not None]
    if f.status is not None:
        out.append(status_is(c.status, f.status))
    if f.mode != "shadow":
        if f.mode == "enforce":
            out.append(c.decided_by == "enforce")
        if f.rule is not None:
            out.append(c.rule_name == f.rule)
    return out


def _prefix(prefix: str) -> list[ColumnElement[bool]]:
    """LIKE for correctness plus a range an index can use whatever the collation."""
    number = verifications.c.number
    out = [number.like(prefix + "%"), number >= prefix]
    upper = _next_prefix(prefix)
    if upper is not None:
        out.append(number < upper)
    return out


def _next_prefix(prefix: str) -> str | None:
    """The smallest digit string above every number starting with `prefix` ("+469" → "+47")."""
    head = prefix.rstrip("9")
    if not head or not head[-1].isdigit():
        return None
    return head[:-1] + str(int(head[-1]) + 1)


def status_is(column: ColumnElement[Any], status: str) -> ColumnElement[bool]:
    """A verification with no result yet is PENDING."""
    if status == "PENDING":
        return or_(column.is_(None), column == status)
    return column == status


def after(cursor: Cursor) -> ColumnElement[bool]:
    """Rows strictly older than the cursor in (requested_at, id) descending order."""
    c = verifications.c
    at = cursor.requested_at
    return and_(c.requested_at <= at, or_(c.requested_at < at, c.id < cursor.id))


def page_query(f: AuditFilter, cursor: Cursor | None, limit: int) -> Select[Any]:
    c = verifications.c
    stmt = select(*SUMMARY_COLUMNS).where(*conditions(f))
    if cursor is not None:
        stmt = stmt.where(after(cursor))
    return stmt.order_by(c.requested_at.desc(), c.id.desc()).limit(limit)


async def search(
    conn: AsyncConnection, f: AuditFilter, *, cursor: Cursor | None, limit: int
) -> list[Verification]:
    """Up to `limit` verifications, newest first, strictly after `cursor` (no `decision` nor
    `answer`)."""
    result = await conn.execute(page_query(f, cursor, limit))
    return [Verification(**row) for row in result.mappings()]


async def by_id(conn: AsyncConnection, verification_id: str) -> Verification | None:
    stmt = select(verifications).where(verifications.c.id == verification_id)
    row = (await conn.execute(stmt)).mappings().one_or_none()
    return Verification(**row) if row is not None else None


async def latest(
    conn: AsyncConnection,
    *,
    reference: str | None = None,
    number: str | None = None,
    method: str | None = None,
) -> Verification | None:
    """The newest verification with this reference, or this method and number (as Sinch does)."""
    c = verifications.c
    stmt = select(verifications)
    for column, value in ((c.reference, reference), (c.number, number), (c.method, method)):
        if value is not None:
            stmt = stmt.where(column == value)
    stmt = stmt.order_by(c.requested_at.desc().nulls_last(), c.created_at.desc()).limit(1)
    row = (await conn.execute(stmt)).mappings().first()
    return Verification(**row) if row is not None else None


async def callbacks_of(conn: AsyncConnection, verification_id: str) -> list[StoredCallback]:
    """Every inbox row for a verification (signed or not), in arrival order."""
    c = callbacks.c
    stmt = select(callbacks).where(c.verification_id == verification_id)
    result = await conn.execute(stmt.order_by(c.received_at, c.id))
    return [StoredCallback(**row) for row in result.mappings()]


async def shadow_matches(conn: AsyncConnection, verification_id: str) -> list[ShadowMatch]:
    c = matches.c
    stmt = select(c.rule_name, c.rule_id, c.rule_revision, c.action, c.reason, c.matched_at)
    stmt = stmt.where(c.verification_id == verification_id).order_by(c.id)
    return [ShadowMatch(**row) for row in (await conn.execute(stmt)).mappings()]


async def rule_revision(
    conn: AsyncConnection, rule_id: int, revision: int
) -> RuleAtRevision | None:
    """The rule exactly as it was at that revision (kept after the rule is deleted)."""
    c = revisions.c
    stmt = select(c.rule_name, c.revision, c.change, c.actor, c.changed_at, c.after).where(
        c.rule_id == rule_id, c.revision == revision
    )
    row = (await conn.execute(stmt)).mappings().one_or_none()
    return RuleAtRevision(**row) if row is not None else None


async def log_query(conn: AsyncConnection, entry: AuditLogEntry) -> None:
    """Record who asked what of the audit API."""
    await conn.execute(insert(AuditLogRow).values(asdict(entry)))
