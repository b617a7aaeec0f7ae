"""Decisions: the live feed (newest first, polled by the page), its filters, and one
verification's timeline. Reads go through the audit service: logged, masked for auditors."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app.api.admin_deps import ConnDep
from app.api.audit_schemas import SearchQuery
from app.api.deps import Runtime, RuntimeDep
from app.errors import Unprocessable
from app.services.audit import queries as audit
from app.web.auth import ConsoleDep, UserDep
from app.web.common import ConsoleRoute, reading, render

router = APIRouter(prefix="/decisions", route_class=ConsoleRoute, include_in_schema=False)
FILTERS = ("action", "reason", "rule", "country", "method", "number")
PAGE = 50


def search_query(request: Request) -> tuple[SearchQuery, dict[str, str]]:
    """The filters the form sent (empty fields ignored), validated as /audit's search is."""
    chosen = {k: v.strip() for k in FILTERS if (v := request.query_params.get(k, "")).strip()}
    try:
        return SearchQuery.model_validate({**chosen, "limit": PAGE}), chosen
    except ValidationError as exc:
        errors = [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        raise Unprocessable("A filter is not valid.", errors=errors) from None


@router.get("", response_class=HTMLResponse)
async def decisions_page(
    request: Request, user: UserDep, console: ConsoleDep, runtime: RuntimeDep
) -> Response:
    query, chosen = search_query(request)
    page = await _page(request, console, user, runtime, query)
    return render(
        request, console, user, "decisions.html", page="Decisions", items=page, chosen=chosen
    )


@router.get("/rows", response_class=HTMLResponse)
async def decision_rows(
    request: Request, user: UserDep, console: ConsoleDep, runtime: RuntimeDep
) -> Response:
    """The feed's rows alone: what the page polls for (logged now and then, see polls.py)."""
    query, _ = search_query(request)
    page = await _page(request, console, user, runtime, query, poll=True)
    return render(request, console, user, "decision_rows.html", items=page)


@router.get("/{verification_id}", response_class=HTMLResponse)
async def timeline_page(
    verification_id: str, request: Request, user: UserDep, console: ConsoleDep, conn: ConnDep
) -> Response:
    ctx = reading(request, console, user)
    doc = await audit.timeline(conn=conn, ctx=ctx, verification_id=verification_id)
    events = [(event, _pretty(event)) for event in doc["events"]]
    return render(
        request,
        console,
        user,
        "timeline.html",
        page="Decisions",
        v=doc["verification"],
        events=events,
    )


async def _page(
    request: Request,
    console: Any,
    user: Any,
    runtime: Runtime,
    query: SearchQuery,
    *,
    poll: bool = False,
) -> list[Any]:
    """Read through the runtime's reader, the read logged apart first: the feed polls every
    2 s, and on SQLite the writer is the request path's one connection."""
    ctx = await audit.record_apart(runtime.engine, reading(request, console, user, poll=poll))
    async with runtime.reader.connect() as conn:
        found = await audit.search(
            conn=conn, ctx=ctx, filters=query.to_filter(), cursor=None, limit=query.limit
        )
    return list(found["items"])


def _pretty(event: Any) -> str:
    details = {k: v for k, v in event.items() if k not in ("at", "kind")}
    return json.dumps(details, indent=2, ensure_ascii=False, default=str)
