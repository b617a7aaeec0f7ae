"""Delivering the outbox: each due notification posted once to its channel, retried with
exponential backoff until it is answered 2xx or runs out of attempts; every attempt stored.

Only the evaluator holding the lease delivers, so a notification is not sent twice by two
processes; a crash between the receiver's answer and the row's update sends it again (the
`webhook-id` lets a receiver drop the repeat).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.metrics import Metrics
from app.rules.alerts import Channel
from app.services.alerts.messages import slack_text
from app.services.alerts.signing import webhook_headers
from app.store import alerts as store
from app.store.alert_rows import Notification

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Backoff:
    base_seconds: float = 2.0
    max_seconds: float = 600.0
    max_attempts: int = 10

    def next_at(self, attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failures; None: give up."""
        if attempts >= self.max_attempts:
            return None
        delay = min(self.base_seconds * 2 ** (attempts - 1), self.max_seconds)
        return now + timedelta(seconds=delay)


@dataclass(frozen=True, slots=True)
class Sent:
    status: int | None
    error: str | None
    elapsed_ms: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def request_for(channel: Channel, row: Notification, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and headers a channel gets for one notification."""
    if channel.kind == "slack":
        text = slack_text(row.payload, channel.console_url)
        return json.dumps({"text": text}).encode(), {"content-type": "application/json"}
    body = json.dumps(row.payload, separators=(",", ":")).encode()
    assert channel.secret is not None  # filled in when the policy is stored
    return body, webhook_headers(channel.secret, row.message_id, int(now.timestamp()), body)


async def post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> Sent:
    started = time.perf_counter()
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Sent(None, repr(exc)[:500], (time.perf_counter() - started) * 1000)
    error = None if response.is_success else f"HTTP {response.status_code}"
    return Sent(response.status_code, error, (time.perf_counter() - started) * 1000)


async def deliver_due(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    *,
    channels: dict[str, Channel],
    now: datetime,
    backoff: Backoff,
    metrics: Metrics,
    limit: int = 50,
) -> int:
    """Try every notification due at `now`; return how many were delivered."""
    async with engine.connect() as conn:
        due = await store.due_notifications(conn, now, limit)
    delivered = 0
    for row in due:
        channel = channels.get(row.channel)
        sent = (
            await post(client, channel.url, *request_for(channel, row, now))
            if channel is not None
            else Sent(None, f"channel {row.channel!r} is not in the policy", 0.0)
        )
        delivered += sent.ok
        await _record(engine, row, sent, now, backoff, metrics, channel)
    return delivered


async def _record(
    engine: AsyncEngine,
    row: Notification,
    sent: Sent,
    now: datetime,
    backoff: Backoff,
    metrics: Metrics,
    channel: Channel | None,
) -> None:
    kind = channel.kind if channel else "unknown"
    outcome: dict[str, Any]
    if sent.ok:
        outcome = {"delivered_at": now, "next_attempt_at": None}
        metrics.notifications.labels(kind, "delivered").inc()
    else:
        retry = backoff.next_at(row.attempts + 1, now) if channel is not None else None
        outcome = {"next_attempt_at": retry, "failed_at": now if retry is None else None}
        metrics.notifications.labels(kind, "failed" if retry is None else "retry").inc()
        log.warning(
            "notification.failed",
            id=row.message_id,
            channel=row.channel,
            error=sent.error,
            retry_at=retry.isoformat() if retry else None,
        )
    async with engine.begin() as conn:
        await store.record_attempt(
            conn,
            row,
            at=now,
            http_status=sent.status,
            error=sent.error,
            elapsed_ms=sent.elapsed_ms,
            outcome=outcome,
        )
