"""Containments as admins see and change them: list, approve, lift, extend; each change is
recorded with who and when, and notified to the channels of the alert that made it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Conflict, NotFound
from app.rules.model import Action
from app.services.alerts.outbox import channels_of, containment_changed
from app.services.policy.cache import live_policy
from app.services.tokens import Principal
from app.store import alerts as store
from app.store.alert_rows import AlertEvent, Containment, Notification

STATUSES = ("active", "proposed", "lifted", "expired")


async def list_containments(
    conn: AsyncConnection, *, status: str | None, limit: int
) -> list[Containment]:
    return await store.containment_rows(conn, status=status, limit=limit)


async def alert_history(
    conn: AsyncConnection, *, alert: str | None, since: datetime | None, limit: int
) -> list[AlertEvent]:
    return await store.event_rows(conn, alert=alert, since=since, limit=limit)


async def notifications(conn: AsyncConnection, *, limit: int) -> list[Notification]:
    return await store.notification_rows(conn, limit=limit)


async def approve(
    conn: AsyncConnection, *, containment_id: int, by: Principal, now: datetime, default: Action
) -> Containment:
    """A proposed containment becomes active for its duration, from now."""
    row = await _get(conn, containment_id, allowed=("proposed",), doing="approve")
    expires = now + timedelta(seconds=row.duration_seconds)
    await store.update_containment(
        conn,
        row.id,
        status="active",
        approved_at=now,
        approved_by=by.name,
        expires_at=expires,
        updated_at=now,
    )
    return await _changed(conn, row.id, "containment.approved", now, default)


async def lift(
    conn: AsyncConnection, *, containment_id: int, by: Principal, now: datetime, default: Action
) -> Containment:
    """An active or proposed containment stops blocking at once."""
    row = await _get(conn, containment_id, allowed=("active", "proposed"), doing="lift")
    await store.update_containment(
        conn, row.id, status="lifted", lifted_at=now, lifted_by=by.name, updated_at=now
    )
    return await _changed(conn, row.id, "containment.lifted", now, default)


async def extend(
    conn: AsyncConnection,
    *,
    containment_id: int,
    seconds: int,
    by: Principal,
    now: datetime,
    default: Action,
) -> Containment:
    """An active containment blocks `seconds` longer (counted from now if it had run out)."""
    row = await _get(conn, containment_id, allowed=("active",), doing="extend")
    start = max(row.expires_at or now, now)
    await store.update_containment(
        conn,
        row.id,
        expires_at=start + timedelta(seconds=seconds),
        duration_seconds=row.duration_seconds + seconds,
        extended_at=now,
        extended_by=by.name,
        updated_at=now,
    )
    return await _changed(conn, row.id, "containment.extended", now, default)


async def _get(
    conn: AsyncConnection, containment_id: int, *, allowed: tuple[str, ...], doing: str
) -> Containment:
    row = await store.containment_row(conn, containment_id, for_update=True)
    if row is None:
        raise NotFound(f"no containment {containment_id}", code="containment_not_found")
    if row.status not in allowed:
        raise Conflict(
            f"cannot {doing} a containment that is {row.status}", code="containment_state"
        )
    return row


async def _changed(
    conn: AsyncConnection, containment_id: int, kind: str, now: datetime, default: Action
) -> Containment:
    row = await store.containment_row(conn, containment_id)
    assert row is not None
    policy = await live_policy(conn, default_action=default)
    await containment_changed(conn, kind, row, channels=channels_of(policy, row.alert), now=now)
    return row
