"""The notification outbox: one row per channel, written in the transaction of the event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.model import Policy
from app.services.alerts import messages
from app.store import alerts as store
from app.store.alert_rows import Containment


def channels_of(policy: Policy, alert: str | None) -> list[str]:
    """The channels an alert notifies (none for an alert no longer in the policy)."""
    for candidate in policy.alerts:
        if candidate.name == alert:
            return list(candidate.notify)
    return []


async def enqueue(
    conn: AsyncConnection, *, channels: list[str], body: dict[str, Any], now: datetime
) -> None:
    for channel in channels:
        await store.add_notification(
            conn,
            message_id=f"msg_{uuid.uuid4().hex}",
            channel=channel,
            type=body["type"],
            payload=body,
            created_at=now,
            next_attempt_at=now,
        )


async def containment_changed(
    conn: AsyncConnection, kind: str, row: Containment, *, channels: list[str], now: datetime
) -> None:
    """Notify `channels` that a containment changed (`row` as it is now): created, lifted,
    expired, approved…"""
    body = messages.payload(
        kind, alert=row.alert, key=row.key, value=row.value, at=now, containment=row
    )
    await enqueue(conn, channels=channels, body=body, now=now)
