"""/audit endpoints: look-ups, search, timeline, export and stats, for auditors and admins.

Each read runs on the runtime's reader (on a SQLite file beside the one connection request
events are decided on: an attack's million rows searched hold no decision back), and the
query is logged after it in a short transaction of the writer (an export's before its rows
stream, each chunk on a reader connection of its own); refused queries are logged too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.api.audit_schemas import (
    ExportQuery,
    SearchQuery,
    StatsQuery,
    StatsRead,
    Timeline,
    VerificationPage,
    VerificationRead,
    e164,
)
from app.api.auth import AuditorDep
from app.api.deps import Runtime, RuntimeDep
from app.api.problems import problem_responses
from app.errors import AppError
from app.services.audit import export as audit_export
from app.services.audit import queries as audit
from app.services.audit import stats as audit_stats
from app.services.audit.documents import PageDoc, StatsDoc, TimelineDoc, VerificationDoc
from app.services.audit.queries import AuditContext

router = APIRouter(prefix="/audit", tags=["audit"], responses=problem_responses(401))
ONE = problem_responses(404)
EXPORTED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One line per verification, newest first.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}
T = TypeVar("T")


async def audit_trail(
    request: Request, runtime: RuntimeDep, principal: AuditorDep
) -> AsyncIterator[AuditContext]:
    """Who asks what; a query that fails is logged after its transaction rolled back."""
    ctx = audit.audit_context(
        principal=principal,
        settings=runtime.settings,
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        now=datetime.now(UTC),
    )
    try:
        yield ctx
    except Exception as exc:
        await audit.record_refusal(engine=runtime.engine, ctx=ctx, status=_status(exc))
        raise


def _status(exc: Exception) -> int:
    if isinstance(exc, AppError):
        return exc.status
    return 422 if isinstance(exc, RequestValidationError) else 500


Ctx = Annotated[AuditContext, Depends(audit_trail)]


def _read(
    runtime: Runtime,
    ctx: AuditContext,
    read: Callable[[AsyncConnection, AuditContext], Awaitable[T]],
) -> Awaitable[T]:
    """`read` beside the writer, then logged (`read_apart`)."""
    return audit.read_apart(runtime.engine, runtime.reader, ctx, read)


@router.get(
    "/verifications", response_model=VerificationPage, responses=problem_responses(400, 422)
)
async def search_verifications(
    q: Annotated[SearchQuery, Query()], ctx: Ctx, runtime: RuntimeDep
) -> PageDoc:
    """Search verifications, newest first, one page at a time."""
    filters = q.to_filter()
    return await _read(
        runtime,
        ctx,
        lambda conn, c: audit.search(
            conn=conn, ctx=c, filters=filters, cursor=q.cursor, limit=q.limit
        ),
    )


@router.get("/verifications/id/{verification_id}", response_model=VerificationRead, responses=ONE)
async def verification_by_id(
    verification_id: str, ctx: Ctx, runtime: RuntimeDep
) -> VerificationDoc:
    """Look up a verification by its Sinch id."""
    return await _read(
        runtime,
        ctx,
        lambda conn, c: audit.lookup(conn=conn, ctx=c, verification_id=verification_id),
    )


@router.get(
    "/verifications/reference/{reference:path}", response_model=VerificationRead, responses=ONE
)
async def verification_by_reference(
    reference: str, ctx: Ctx, runtime: RuntimeDep
) -> VerificationDoc:
    """Look up the newest verification with this reference."""
    return await _read(
        runtime, ctx, lambda conn, c: audit.lookup(conn=conn, ctx=c, reference=reference)
    )


@router.get(
    "/verifications/{method}/number/{endpoint}",
    response_model=VerificationRead,
    responses=problem_responses(404, 422),
)
async def verification_by_number(
    method: str, endpoint: str, ctx: Ctx, runtime: RuntimeDep
) -> VerificationDoc:
    """Look up the newest verification of this method for this number."""
    number = e164(endpoint)
    return await _read(
        runtime,
        ctx,
        lambda conn, c: audit.lookup(conn=conn, ctx=c, method=method.lower(), number=number),
    )


@router.get("/verifications/{verification_id}/timeline", response_model=Timeline, responses=ONE)
async def verification_timeline(verification_id: str, ctx: Ctx, runtime: RuntimeDep) -> TimelineDoc:
    """Everything about one verification: callbacks as received, decision, trace, results."""
    return await _read(
        runtime,
        ctx,
        lambda conn, c: audit.timeline(conn=conn, ctx=c, verification_id=verification_id),
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={**EXPORTED, **problem_responses(400, 422)},
)
async def export_verifications(
    q: Annotated[ExportQuery, Query()], ctx: Ctx, runtime: RuntimeDep
) -> StreamingResponse:
    """Export the matching verifications as CSV or NDJSON, streamed newest first."""
    out = await audit_export.export(
        writer=runtime.engine,
        connect=runtime.reader.connect,
        ctx=ctx,
        filters=q.to_filter(),
        fmt=q.format,
    )
    disposition = {"Content-Disposition": f'attachment; filename="{out.filename}"'}
    return StreamingResponse(out.chunks, media_type=out.media_type, headers=disposition)


@router.get("/stats", response_model=StatsRead, responses=problem_responses(400, 422))
async def verification_stats(
    q: Annotated[StatsQuery, Query()], ctx: Ctx, runtime: RuntimeDep
) -> StatsDoc:
    """Attempts, decisions, outcomes and spend per time bucket and group."""
    return await stats_for(q, writer=runtime.engine, reader=runtime.reader, ctx=ctx)


async def stats_for(
    q: StatsQuery, *, writer: AsyncEngine, reader: AsyncEngine, ctx: AuditContext
) -> StatsDoc:
    """The stats a query asks for (also `verifyguard audit stats`), read beside the writer."""
    return await audit_stats.stats_apart(
        writer,
        reader,
        ctx=ctx,
        filters=q.to_filter(),
        bucket=q.bucket,
        group_by=q.group_by,
        range_digits=q.range_digits,
        top=q.top,
    )
