"""The notification outbox: one row per channel, written in the transaction of the event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.model import Policy
from app.store import alerts as store


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
