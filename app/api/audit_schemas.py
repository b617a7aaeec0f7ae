"""Query parameters and response shapes of the /audit API (responses in Sinch's camelCase)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from app.services.audit.queries import AuditFilter
from app.services.audit.stats import Bucket, GroupBy

_DIGITS = r"^\+\d{1,15}$"


def e164(value: str) -> str:
    """Numbers arrive in query strings where `+` decodes to a space: put the `+` back."""
    value = value.strip()
    return value if value.startswith("+") else "+" + value


class Filters(BaseModel):
    """Filters shared by search, export and stats; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(None, description="Requested at or after (ISO-8601).")
    until: datetime | None = Field(None, description="Requested before (ISO-8601).")
    number: str | None = Field(None, pattern=_DIGITS, description="E.164 number, exact.")
    number_prefix: str | None = Field(None, pattern=_DIGITS, description="E.164 prefix.")
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2}$", description="ISO alpha-2.")
    method: str | None = Field(None, max_length=32)
    action: Literal["allow", "deny"] | None = None
    reason: str | None = Field(None, max_length=64, description="Our decision's reason code.")
    rule: str | None = Field(None, max_length=100)
    mode: Literal["enforce", "shadow"] | None = Field(
        None, description="enforce: decided by the rule; shadow: the shadow rule matched."
    )
    status: str | None = Field(None, max_length=32, description="Final status, e.g. SUCCESSFUL.")
    application: str | None = Field(None, max_length=64, description="Sinch application key.")

    @field_validator("number", "number_prefix", mode="before")
    @classmethod
    def _plus(cls, value: Any) -> Any:
        return e164(value) if isinstance(value, str) else value

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def to_filter(self) -> AuditFilter:
        return AuditFilter(
            since=self.since,
            until=self.until,
            number=self.number,
            number_prefix=self.number_prefix,
            country=self.country.upper() if self.country else None,
            method=self.method.lower() if self.method else None,
            action=self.action,
            reason=self.reason,
            rule=self.rule,
            mode=self.mode,
            status=self.status.upper() if self.status else None,
            application=self.application.lower() if self.application else None,
        )


class SearchQuery(Filters):
    cursor: str | None = Field(None, max_length=512, description="nextCursor of the last page.")
    limit: int = Field(50, ge=1, le=500)


class ExportQuery(Filters):
    format: Literal["csv", "ndjson"] = "csv"


class StatsQuery(Filters):
    bucket: Bucket | None = Field(None, description="Split by time; none: one row per group.")
    group_by: GroupBy | None = None
    range_digits: int = Field(6, ge=2, le=8, description="Digits in a denied number range.")
    top: int = Field(10, ge=1, le=100, description="How many denied ranges to list.")


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Identity(_Camel):
    type: str
    endpoint: str | None


class Money(_Camel):
    currency_id: str | None
    amount: float | None


class Price(_Camel):
    verification_price: Money


class DecisionSummary(_Camel):
    action: str | None
    reason: str | None
    decided_by: str | None
    rule: str | None
    rule_id: int | None
    rule_revision: int | None
    shadow_deny: bool
    degraded: bool
    decided_at: datetime | None
    decision_ms: float | None


class VerificationRead(_Camel):
    """A verification as Sinch's status API shows it, plus our decision."""

    id: str
    method: str | None
    status: str
    reason: str | None
    reference: str | None
    identity: Identity
    country_id: str | None
    verification_timestamp: datetime | None
    source: str | None
    price: Price | None
    custom: str | None
    application: str | None
    calling_code: int | None
    number_type: str | None
    requested_at: datetime | None
    result_at: datetime | None
    sms_result: str | None
    decision: DecisionSummary


class VerificationPage(_Camel):
    items: list[VerificationRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older page.")


class CallbackEventRead(_Camel):
    """A callback as received, signed or not, and how we answered it."""

    at: str | None = Field(description="When it was received (ISO-8601).")
    kind: Literal["request", "result", "sms_delivered", "other"]
    event: str | None = Field(description="Sinch's event name, e.g. VerificationResultEvent.")
    callback_id: int
    application: str | None
    signature: str
    http_status: int = Field(description="The HTTP status we answered with.")
    error_code: str | None
    content_type: str | None
    body: Any = Field(description="The body as JSON; null when it was not JSON.")
    raw_text: str | None = Field(description="The body as text when it was not JSON.")


class RuleRevisionRead(_Camel):
    """The deciding rule as it was at the revision that decided."""

    rule: str
    revision: int
    change: str
    actor: str | None
    changed_at: str | None
    definition: Any = Field(description="The rule's definition at that revision.")


class ShadowMatchRead(_Camel):
    rule: str
    rule_id: int | None
    rule_revision: int | None
    action: str
    reason: str
    matched_at: str | None


class DecisionEventRead(_Camel):
    """Our decision on the request event, with what it was made from."""

    at: str | None
    kind: Literal["decision"]
    action: str | None
    reason: str | None
    decided_by: str | None
    rule: str | None
    rule_id: int | None
    rule_revision: int | None
    rule_definition: RuleRevisionRead | None
    policy_version: int | None
    decision_ms: float | None
    degraded: bool
    answer: Any = Field(description="The answer sent to Sinch.")
    shadow_matches: list[ShadowMatchRead]
    trace: Any = Field(description="The rules engine's trace, rule by rule.")
    aggregates: Any = Field(description="The counts the rules read.")
    facts: Any = Field(description="The facts the rules saw.")


TimelineEventRead = Annotated[CallbackEventRead | DecisionEventRead, Field(discriminator="kind")]


class Timeline(_Camel):
    verification: VerificationRead
    events: list[TimelineEventRead] = Field(
        description="Callbacks as received (request, sms_delivered, result, other) and the "
        "decision (trace, rule revision, shadow matches), in order."
    )


class StatsCell(_Camel):
    model_config = ConfigDict(extra="allow")

    bucket: datetime | None = None
    group: str | None = None
    attempts: int
    allowed: int
    denied: int
    shadow_would_deny: int
    completed: int
    successful: int
    conversion_rate: float | None
    spend_allowed: dict[str, float]
    spend_denied: dict[str, float]


class DeniedRange(_Camel):
    range: str
    denied: int


class ShadowRuleStats(_Camel):
    rule: str
    matches: int
    would_deny: int
    would_deny_allowed: int
    would_deny_successful: int
    spend_would_save: dict[str, float]


class StatsRead(_Camel):
    since: datetime
    until: datetime
    bucket: Bucket | None
    group_by: GroupBy | None
    rows: list[StatsCell]
    totals: StatsCell
    top_denied_ranges: list[DeniedRange]
    shadow_rules: list[ShadowRuleStats]
