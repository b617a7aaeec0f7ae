"""Alert state and history, containments and the notification outbox in SQL."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.alert_rows import AlertEvent, AlertStateRecord, Containment, Notification
from app.store.locks import lock_rows
from app.store.models import (
    AlertEventRow,
    AlertStateRow,
    ContainmentRow,
    NotificationAttemptRow,
    NotificationRow,
)

states = cast(Table, AlertStateRow.__table__)
events = cast(Table, AlertEventRow.__table__)
containments = cast(Table, ContainmentRow.__table__)
notifications = cast(Table, NotificationRow.__table__)
attempts = cast(Table, NotificationAttemptRow.__table__)


async def load_states(conn: AsyncConnection, alert: str) -> dict[str, AlertStateRecord]:
    stmt = select(states).where(states.c.alert == alert)
    return {
        row["value"]: AlertStateRecord(
            value=row["value"],
            firing=bool(row["firing"]),
            last_fired_at=row["last_fired_at"],
            below_since=row["below_since"],
        )
        for row in (await conn.execute(stmt)).mappings()
    }


async def save_states(
    conn: AsyncConnection, alert: str, changed: Iterable[AlertStateRecord], now: datetime
) -> None:
    for state in changed:
        values = {
            "firing": state.firing,
            "last_fired_at": state.last_fired_at,
            "below_since": state.below_since,
            "updated_at": now,
        }
        where = (states.c.alert == alert) & (states.c.value == state.value)
        if (await conn.execute(update(states).where(where).values(**values))).rowcount == 0:
            await conn.execute(insert(states).values(alert=alert, value=state.value, **values))


async def firing_count(conn: AsyncConnection) -> int:
    stmt = select(func.count()).select_from(states).where(states.c.firing.is_(True))
    return int((await conn.execute(stmt)).scalar_one())


async def add_event(conn: AsyncConnection, event: AlertEvent) -> int:
    values = {k: v for k, v in asdict(event).items() if k != "id"}
    stmt = insert(events).values(**values).returning(events.c.id)
    return int((await conn.execute(stmt)).scalar_one())


async def event_rows(
    conn: AsyncConnection, *, alert: str | None, since: datetime | None, limit: int
) -> list[AlertEvent]:
    stmt = select(events).order_by(events.c.id.desc()).limit(limit)
    if alert is not None:
        stmt = stmt.where(events.c.alert == alert)
    if since is not None:
        stmt = stmt.where(events.c.at >= since)
    return [AlertEvent(**row) for row in (await conn.execute(stmt)).mappings()]


async def add_containment(conn: AsyncConnection, **values: Any) -> int:
    stmt = insert(containments).values(**values).returning(containments.c.id)
    return int((await conn.execute(stmt)).scalar_one())


async def containments_since(
    conn: AsyncConnection, *, key: str, value: str, since: datetime
) -> int:
    """How many containments of this key were created since `since` (escalation)."""
    stmt = (
        select(func.count())
        .select_from(containments)
        .where(
            containments.c.key == key,
            containments.c.value == value,
            containments.c.created_at >= since,
        )
    )
    return int((await conn.execute(stmt)).scalar_one())


async def containment_rows(
    conn: AsyncConnection, *, status: str | None = None, limit: int = 100
) -> list[Containment]:
    stmt = select(containments).order_by(containments.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(containments.c.status == status)
    return [Containment(**row) for row in (await conn.execute(stmt)).mappings()]


async def containment_row(
    conn: AsyncConnection, containment_id: int, *, for_update: bool = False
) -> Containment | None:
    where = containments.c.id == containment_id
    stmt = select(containments).where(where)
    if for_update:
        await lock_rows(conn, containments, where)  # SQLite: two workers' lifts, extends
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).mappings().first()
    return Containment(**row) if row is not None else None


async def update_containment(conn: AsyncConnection, containment_id: int, **values: Any) -> None:
    stmt = update(containments).where(containments.c.id == containment_id).values(**values)
    await conn.execute(stmt)


async def expire_containments(conn: AsyncConnection, now: datetime) -> list[Containment]:
    """Mark active containments past their expiry as expired; return them."""
    due = (containments.c.status == "active") & (containments.c.expires_at <= now)
    rows = (await conn.execute(select(containments).where(due))).mappings().all()
    if rows:
        await conn.execute(update(containments).where(due).values(status="expired", updated_at=now))
    return [Containment(**row) for row in rows]


async def active_containments(conn: AsyncConnection, now: datetime) -> list[Containment]:
    stmt = select(containments).where(
        containments.c.status == "active", containments.c.expires_at > now
    )
    return [Containment(**row) for row in (await conn.execute(stmt)).mappings()]


async def containment_signature(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """Changes to containments change this pair (the cheap poll every worker runs)."""
    stmt = select(func.count(), func.max(containments.c.updated_at)).select_from(containments)
    count, latest = (await conn.execute(stmt)).one()
    return int(count), latest


async def add_notification(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(notifications).values(attempts=0, **values))


async def due_notifications(conn: AsyncConnection, now: datetime, limit: int) -> list[Notification]:
    stmt = (
        select(notifications)
        .where(notifications.c.next_attempt_at <= now)
        .order_by(notifications.c.next_attempt_at, notifications.c.id)
        .limit(limit)
    )
    return [Notification(**row) for row in (await conn.execute(stmt)).mappings()]


async def any_due(conn: AsyncConnection, now: datetime) -> bool:
    stmt = select(notifications.c.id).where(notifications.c.next_attempt_at <= now).limit(1)
    return (await conn.execute(stmt)).first() is not None


async def notification_rows(conn: AsyncConnection, *, limit: int = 100) -> list[Notification]:
    stmt = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
    return [Notification(**row) for row in (await conn.execute(stmt)).mappings()]


async def pending_notifications(conn: AsyncConnection) -> int:
    stmt = (
        select(func.count())
        .select_from(notifications)
        .where(notifications.c.next_attempt_at.is_not(None))
    )
    return int((await conn.execute(stmt)).scalar_one())


async def record_attempt(
    conn: AsyncConnection,
    notification: Notification,
    *,
    at: datetime,
    http_status: int | None,
    error: str | None,
    elapsed_ms: float,
    outcome: dict[str, Any],
) -> None:
    """Store one delivery attempt and the notification's new state (`outcome` columns)."""
    await conn.execute(
        insert(attempts).values(
            notification_id=notification.id,
            at=at,
            http_status=http_status,
            error=error,
            elapsed_ms=elapsed_ms,
        )
    )
    stmt = (
        update(notifications)
        .where(notifications.c.id == notification.id)
        .values(attempts=notifications.c.attempts + 1, last_error=error, **outcome)
    )
    await conn.execute(stmt)


async def attempt_rows(conn: AsyncConnection, notification_id: int) -> list[dict[str, Any]]:
    stmt = (
        select(attempts)
        .where(attempts.c.notification_id == notification_id)
        .order_by(attempts.c.id)
    )
    return [dict(row) for row in (await conn.execute(stmt)).mappings()]


async def containment_counts(conn: AsyncConnection) -> dict[str, int]:
    """How many containments are in each status."""
    stmt = select(containments.c.status, func.count()).group_by(containments.c.status)
    return {str(status): int(n) for status, n in (await conn.execute(stmt)).all()}
