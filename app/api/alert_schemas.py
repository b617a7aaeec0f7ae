"""Response and request shapes of /admin/containments and /admin/alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.rules.durations import parse_duration


class ContainmentRead(BaseModel):
    """A containment: the key it blocks, the alert that made it, its state and history."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    value: str
    alert: str | None
    status: Literal["active", "proposed", "lifted", "expired"]
    created_at: datetime
    expires_at: datetime | None
    created_by: str
    duration_seconds: int
    approved_at: datetime | None
    approved_by: str | None
    lifted_at: datetime | None
    lifted_by: str | None
    extended_at: datetime | None
    extended_by: str | None


class ContainmentExtend(BaseModel):
    """How much longer to block, as a duration ("1h", "6h", "1d")."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    for_: str = Field(alias="for")

    @field_validator("for_")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def seconds(self) -> int:
        return parse_duration(self.for_)


class AlertEventRead(BaseModel):
    """One alert firing or resolving: what was observed against what threshold."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: Literal["alert.firing", "alert.resolved"]
    alert: str
    key: str
    value: str
    metric: str
    observed: float
    threshold: float | None
    window: str
    at: datetime
    containment_id: int | None


class NotificationRead(BaseModel):
    """One notification in the outbox and where its delivery stands."""

    model_config = ConfigDict(from_attributes=True)

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
