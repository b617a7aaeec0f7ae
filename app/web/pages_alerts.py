"""Alerts: the alerts firing now, their history and notifications, and containments with
time left; admins approve, lift and extend a containment (the admin API's service calls)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.api.admin_deps import ConnDep, NowDep
from app.api.deps import RuntimeDep
from app.errors import BadRequest
from app.services.alerts import board as alerts_board
from app.services.alerts import containments as service
from app.web import alerts_view
from app.web.auth import AdminChangeDep, ConsoleDep, UserDep
from app.web.common import ConsoleRoute, back, feature_missing, reading, render
from app.web.features import available

router = APIRouter(prefix="/alerts", route_class=ConsoleRoute, include_in_schema=False)
EXTEND_FOR = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
DOCS = "docs/admin.md"


@router.get("", response_class=HTMLResponse)
async def alerts_page(
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    conn: ConnDep,
    now: NowDep,
    runtime: RuntimeDep,
) -> Response:
    if not available(request.app, "alerts"):
        return feature_missing(request, console, user, "alerts", page="Alerts")
    board = await alerts_board.board(conn, policies=runtime.policies)
    reveal = reading(request, console, user).reveal
    return render(
        request,
        console,
        user,
        "alerts.html",
        page="Alerts",
        configured=bool(board.alerts),
        docs=DOCS,
        extend_for=list(EXTEND_FOR),
        now=now,
        **alerts_view.rows(board, now=now, reveal=reveal),
    )


@router.post("/containments/{containment_id}/approve")
async def approve(
    containment_id: int, user: AdminChangeDep, conn: ConnDep, now: NowDep, runtime: RuntimeDep
) -> Response:
    default = runtime.settings.default_action
    row = await service.approve(
        conn, containment_id=containment_id, by=user.principal, now=now, default=default
    )
    return back("/alerts", notice=f"Containment {row.id} approved: it blocks {row.value} now.")


@router.post("/containments/{containment_id}/lift")
async def lift(
    containment_id: int, user: AdminChangeDep, conn: ConnDep, now: NowDep, runtime: RuntimeDep
) -> Response:
    default = runtime.settings.default_action
    row = await service.lift(
        conn, containment_id=containment_id, by=user.principal, now=now, default=default
    )
    return back("/alerts", notice=f"Containment {row.id} lifted: {row.value} is no longer blocked.")


@router.post("/containments/{containment_id}/extend")
async def extend(
    containment_id: int,
    user: AdminChangeDep,
    conn: ConnDep,
    now: NowDep,
    runtime: RuntimeDep,
    duration: Annotated[str, Form()] = "1h",
) -> Response:
    if duration not in EXTEND_FOR:
        raise BadRequest(
            f"{duration!r} is not one of {', '.join(EXTEND_FOR)}.", code="invalid_duration"
        )
    row = await service.extend(
        conn,
        containment_id=containment_id,
        seconds=EXTEND_FOR[duration],
        by=user.principal,
        now=now,
        default=runtime.settings.default_action,
    )
    until = alerts_view.time_left(row.expires_at, now)
    return back("/alerts", notice=f"Containment {row.id} extended by {duration}: {until} left.")
