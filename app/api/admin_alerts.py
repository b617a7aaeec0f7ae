"""/admin/containments (list, approve, lift, extend) and /admin/alerts (history, outbox)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.admin_deps import ConnDep, ContainmentId, NowDep, ReadDep
from app.api.alert_schemas import (
    AlertEventRead,
    ContainmentExtend,
    ContainmentRead,
    NotificationRead,
)
from app.api.auth import AdminDep, AuditorDep
from app.api.deps import RuntimeDep
from app.api.problems import problem_responses
from app.services.alerts import containments as service

router = APIRouter()
Limit = Annotated[int, Query(ge=1, le=1000)]
READ = problem_responses(401, 422)
CHANGE = problem_responses(401, 403, 404, 409, 422)
CHANGE_WITH_BODY = problem_responses(400, 401, 403, 404, 409, 413, 422)


@router.get("/containments", response_model=list[ContainmentRead], responses=READ)
async def list_containments(
    _: AuditorDep,
    conn: ReadDep,
    status: Literal["active", "proposed", "lifted", "expired"] | None = None,
    limit: Limit = 100,
) -> list[ContainmentRead]:
    """List containments, newest first."""
    rows = await service.list_containments(conn, status=status, limit=limit)
    return [ContainmentRead.model_validate(row) for row in rows]


@router.post(
    "/containments/{containment_id}/approve", response_model=ContainmentRead, responses=CHANGE
)
async def approve(
    containment_id: ContainmentId, by: AdminDep, conn: ConnDep, now: NowDep, runtime: RuntimeDep
) -> ContainmentRead:
    """Approve a proposed containment: it blocks from now for its duration."""
    row = await service.approve(
        conn, containment_id=containment_id, by=by, now=now, default=runtime.settings.default_action
    )
    return ContainmentRead.model_validate(row)


@router.post(
    "/containments/{containment_id}/lift", response_model=ContainmentRead, responses=CHANGE
)
async def lift(
    containment_id: ContainmentId, by: AdminDep, conn: ConnDep, now: NowDep, runtime: RuntimeDep
) -> ContainmentRead:
    """Lift an active or proposed containment: it stops blocking at once."""
    row = await service.lift(
        conn, containment_id=containment_id, by=by, now=now, default=runtime.settings.default_action
    )
    return ContainmentRead.model_validate(row)


@router.post(
    "/containments/{containment_id}/extend",
    response_model=ContainmentRead,
    responses=CHANGE_WITH_BODY,
)
async def extend(
    containment_id: ContainmentId,
    body: ContainmentExtend,
    by: AdminDep,
    conn: ConnDep,
    now: NowDep,
    runtime: RuntimeDep,
) -> ContainmentRead:
    """Extend an active containment by a duration."""
    row = await service.extend(
        conn,
        containment_id=containment_id,
        seconds=body.seconds,
        by=by,
        now=now,
        default=runtime.settings.default_action,
    )
    return ContainmentRead.model_validate(row)


@router.get("/alerts/events", response_model=list[AlertEventRead], responses=READ)
async def alert_events(
    _: AuditorDep,
    conn: ReadDep,
    alert: str | None = None,
    since: datetime | None = None,
    limit: Limit = 100,
) -> list[AlertEventRead]:
    """Alert history: firings and resolutions, newest first."""
    rows = await service.alert_history(conn, alert=alert, since=since, limit=limit)
    return [AlertEventRead.model_validate(row) for row in rows]


@router.get("/alerts/notifications", response_model=list[NotificationRead], responses=READ)
async def notifications(_: AuditorDep, conn: ReadDep, limit: Limit = 100) -> list[NotificationRead]:
    """The notification outbox, newest first: delivered, pending and given up."""
    rows = await service.notifications(conn, limit=limit)
    return [NotificationRead.model_validate(row) for row in rows]
