"""Audit use cases: look-ups, search pages and timelines; every query is itself logged.

Successful queries are logged in the caller's transaction, or, read beside the writer
(`read_apart`), in a short one of the writer's after the read; refused ones (404, 400, 422)
are logged by `record_refusal` in a transaction of their own, after the first rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import BadRequest, NotFound
from app.services.audit import view
from app.services.audit.documents import PageDoc, TimelineDoc, VerificationDoc
from app.services.audit.timeline import timeline_events
from app.services.tokens import Principal
from app.settings import Settings
from app.store import audit as store
from app.store.audit import AuditFilter
from app.store.audit_rows import AuditLogEntry

log = structlog.get_logger()
T = TypeVar("T")

__all__ = [
    "AuditContext",
    "AuditFilter",
    "audit_context",
    "lookup",
    "read_apart",
    "record",
    "record_refusal",
    "search",
    "timeline",
]


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who asks what (for the audit log), and whether they may see whole numbers. A read
    with `logged` false (a page's repeated poll, already logged) is not logged again."""

    principal: Principal
    method: str
    path: str
    query: dict[str, Any]
    at: datetime
    reveal: bool
    logged: bool = True


def audit_context(
    *,
    principal: Principal,
    settings: Settings,
    method: str,
    path: str,
    query: dict[str, Any],
    now: datetime,
    logged: bool = True,
) -> AuditContext:
    """Admins see whole numbers; auditors too when masking is switched off."""
    reveal = principal.is_admin or not settings.mask_numbers_for_auditors
    return AuditContext(principal, method, path, query, now, reveal, logged)


async def record(conn: AsyncConnection, *, ctx: AuditContext, status: int = 200) -> None:
    if status == 200 and not ctx.logged:
        return
    await store.log_query(
        conn,
        AuditLogEntry(
            at=ctx.at,
            token_id=ctx.principal.token_id,
            token_name=ctx.principal.name,
            role=ctx.principal.role,
            method=ctx.method[:8],
            path=ctx.path[:500],
            query=ctx.query or None,
            status=status,
        ),
    )


async def record_apart(engine: AsyncEngine, ctx: AuditContext) -> AuditContext:
    """Log a read in a short transaction of its own, before the read runs on another
    connection (the runtime's reader: on SQLite not the request path's one connection, held
    otherwise while the page reads and renders). Returns the context to read with, logged."""
    if ctx.logged:
        async with engine.begin() as conn:
            await record(conn, ctx=ctx)
    return replace(ctx, logged=False)


async def read_apart(
    writer: AsyncEngine,
    reader: AsyncEngine,
    ctx: AuditContext,
    read: Callable[[AsyncConnection, AuditContext], Awaitable[T]],
) -> T:
    """`read` on the reader, then the query logged in a short transaction of the writer.

    On a SQLite file the writer is the one connection request events are decided on (their
    group commit), and an auditor's search whose filter few rows match reads the whole
    table: under an attack a million rows, a second or more, every decision meanwhile the
    fallback. The reader (store/base.py `create_reader`) reads beside it; elsewhere it is the
    writer's engine, and the read takes a connection of its own as before. A read that
    fails is not logged here: the caller logs its refusal, as when both were one
    transaction."""
    async with reader.connect() as conn:
        result = await read(conn, replace(ctx, logged=False))
    if ctx.logged:
        async with writer.begin() as conn:
            await record(conn, ctx=ctx)
    return result


async def record_refusal(*, engine: AsyncEngine, ctx: AuditContext, status: int) -> None:
    """Log a query that failed; its own transaction rolled back with the error."""
    try:
        async with engine.begin() as conn:
            await record(conn, ctx=ctx, status=status)
    except Exception:
        log.exception("audit.log_failed", path=ctx.path, status=status)


async def lookup(
    *,
    conn: AsyncConnection,
    ctx: AuditContext,
    verification_id: str | None = None,
    reference: str | None = None,
    method: str | None = None,
    number: str | None = None,
) -> VerificationDoc:
    """One verification by id, or the newest by reference or by method and number."""
    await record(conn, ctx=ctx)
    if verification_id is not None:
        row = await store.by_id(conn, verification_id)
    else:
        row = await store.latest(conn, reference=reference, number=number, method=method)
    if row is None:
        raise NotFound("No verification matches.", code="verification_not_found")
    return view.sinch_shaped(row, reveal=ctx.reveal)


async def search(
    *,
    conn: AsyncConnection,
    ctx: AuditContext,
    filters: AuditFilter,
    cursor: str | None,
    limit: int,
) -> PageDoc:
    """A page of verifications, newest first, and the cursor of the next (older) page."""
    await record(conn, ctx=ctx)
    after = _cursor(cursor)
    rows = await store.search(conn, filters, cursor=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [view.sinch_shaped(row, reveal=ctx.reveal) for row in rows],
        "nextCursor": view.encode_cursor(rows[-1]) if more else None,
    }


def _cursor(token: str | None) -> store.Cursor | None:
    if not token:
        return None
    try:
        return view.decode_cursor(token)
    except ValueError:
        raise BadRequest("The cursor is not one this API issued.", code="invalid_cursor") from None


async def timeline(
    *, conn: AsyncConnection, ctx: AuditContext, verification_id: str
) -> TimelineDoc:
    """Everything about one verification in order: callbacks as received and the decision."""
    await record(conn, ctx=ctx)
    row = await store.by_id(conn, verification_id)
    if row is None:
        raise NotFound("No verification has this id.", code="verification_not_found")
    events = await timeline_events(conn, row)
    result: TimelineDoc = {"verification": view.sinch_shaped(row, reveal=True), "events": events}
    return result if ctx.reveal else view.mask_deep(result)
