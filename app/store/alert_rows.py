"""Typed rows of alert history, containments and the notification outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertStateRecord:
    """An `alert_states` row: one key of one alert."""

    value: str
    firing: bool
    last_fired_at: datetime | None
    below_since: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """An `alert_events` row (`id` None before it is stored)."""

    kind: str
    alert: str
    key: str
    value: str
    metric: str
    observed: float
    threshold: float | None
    window: str
    at: datetime
    containment_id: int | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Containment:
    """A `containments` row."""

    id: int
    key: str
    value: str
    alert: str | None
    status: str
    duration_seconds: int
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    approved_at: datetime | None
    approved_by: str | None
    lifted_at: datetime | None
    lifted_by: str | None
    extended_at: datetime | None
    extended_by: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A `notifications` row: one message for one channel."""

    id: int
    message_id: str
    channel: str
    type: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    last_error: str | None
