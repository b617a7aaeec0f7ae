"""Request and response bodies of /admin/backtest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.store.backtests import BacktestRecord

Status = Literal["running", "done", "failed", "cancelled"]


class BacktestCreate(BaseModel):
    """A candidate policy (as PUT /admin/policy takes it) and the stored history to replay."""

    policy: dict[str, Any] = Field(
        description="A policy document; without `lists`, the live lists are used."
    )
    since: datetime = Field(description="Start of the history (ISO time; UTC if no zone).")
    until: datetime | None = Field(default=None, description="End (exclusive); default: now.")


class Decided(BaseModel):
    allowed: int
    denied: int


class Flips(BaseModel):
    allow_to_deny: int
    deny_to_allow: int


class Counts(BaseModel):
    attempts: int
    live: Decided
    candidate: Decided
    flips: Flips
    false_positives: int = Field(description="Attempts the candidate denies that verified.")
    caught: int = Field(description="Live allowed, the candidate denies, never verified.")


class RuleResult(BaseModel):
    rule: str
    mode: Literal["enforce", "shadow"]
    action: Literal["allow", "deny"]
    matched: int
    would_deny: int
    false_positives: int
    caught: int


class CountryResult(Counts):
    country: str


class DayResult(Counts):
    day: str


class Skipped(BaseModel):
    reason: str
    count: int


class SampleDecision(BaseModel):
    action: str | None
    reason: str | None
    rule: str | None


class CandidateDecision(SampleDecision):
    shadow: list[dict[str, Any]] = Field(default_factory=list)
    trace: list[dict[str, Any]] = Field(default_factory=list)


class Sample(BaseModel):
    verification_id: str
    requested_at: datetime
    number: str | None
    country: str | None
    method: str | None
    status: str | None
    live: SampleDecision
    candidate: CandidateDecision


class BacktestResult(Counts):
    spend_saved: dict[str, float] = Field(description="Price of caught attempts, per currency.")
    spend_lost: dict[str, float] = Field(description="Price of verified attempts denied.")
    by_rule: list[RuleResult]
    by_country: list[CountryResult]
    by_day: list[DayResult]
    samples: dict[str, list[Sample]]
    skipped: list[Skipped]


class BacktestRead(BaseModel):
    id: int
    status: Status
    progress: float = Field(ge=0, le=1)
    since: datetime
    until: datetime
    created_at: datetime
    created_by: str | None
    finished_at: datetime | None
    cancel_requested: bool
    error: str | None
    result: BacktestResult | None

    @classmethod
    def of(cls, record: BacktestRecord) -> BacktestRead:
        return cls.model_validate(
            {
                "id": record.id,
                "status": record.status,
                "progress": record.progress,
                "since": record.since,
                "until": record.until,
                "created_at": record.created_at,
                "created_by": record.created_by,
                "finished_at": record.finished_at,
                "cancel_requested": record.cancel_requested,
                "error": record.error,
                "result": record.result,
            }
        )
