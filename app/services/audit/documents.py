"""The audit's answers as the JSON documents they are (TypedDicts, in wire order and camelCase):
the API validates them into its response models, the CLI prints them as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict

from app.store.audit_stats import Bucket, GroupBy

CallbackKind = Literal["request", "result", "sms_delivered", "other"]


class Identity(TypedDict):
    type: str
    endpoint: str | None


class Money(TypedDict):
    currencyId: str | None
    amount: float | None


class Price(TypedDict):
    verificationPrice: Money


class DecisionDoc(TypedDict):
    action: str | None
    reason: str | None
    decidedBy: str | None
    rule: str | None
    ruleId: int | None
    ruleRevision: int | None
    shadowDeny: bool
    degraded: bool
    decidedAt: str | None
    decisionMs: float | None


class VerificationDoc(TypedDict):
    """A verification as Sinch's status API shows it, plus where it came from and our decision."""

    id: str
    method: str | None
    status: str
    reason: str | None
    reference: str | None
    identity: Identity
    countryId: str | None
    verificationTimestamp: str | None
    source: str | None
    price: Price | None
    custom: str | None
    application: str | None
    callingCode: int | None
    numberType: str | None
    requestedAt: str | None
    resultAt: str | None
    smsResult: str | None
    decision: DecisionDoc


class PageDoc(TypedDict):
    items: list[VerificationDoc]
    nextCursor: str | None


class CallbackEvent(TypedDict):
    at: str | None
    kind: CallbackKind
    event: str | None
    callbackId: int
    application: str | None
    signature: str
    httpStatus: int
    errorCode: str | None
    contentType: str | None
    body: Any  # the callback's JSON as received
    rawText: str | None


class RuleRevisionDoc(TypedDict):
    rule: str
    revision: int
    change: str
    actor: str | None
    changedAt: str | None
    definition: Any  # the rule's definition at that revision


class ShadowMatchDoc(TypedDict):
    rule: str
    ruleId: int | None
    ruleRevision: int | None
    action: str
    reason: str
    matchedAt: str | None


class DecisionEvent(TypedDict):
    at: str | None
    kind: Literal["decision"]
    action: str | None
    reason: str | None
    decidedBy: str | None
    rule: str | None
    ruleId: int | None
    ruleRevision: int | None
    ruleDefinition: RuleRevisionDoc | None
    policyVersion: Any
    decisionMs: float | None
    degraded: bool
    answer: Any  # the answer sent to Sinch, as stored
    shadowMatches: list[ShadowMatchDoc]
    trace: Any  # the engine's trace, as stored with the decision
    aggregates: Any
    facts: Any


TimelineEvent = CallbackEvent | DecisionEvent


class TimelineDoc(TypedDict):
    verification: VerificationDoc
    events: list[TimelineEvent]


class StatsCounts(TypedDict):
    """A stats row's counts, and its spend per currency."""

    attempts: int
    allowed: int
    denied: int
    shadowWouldDeny: int
    completed: int
    successful: int
    spendAllowed: dict[str, float]
    spendDenied: dict[str, float]


class StatsRow(StatsCounts):
    """One (bucket, group) row, in this order: bucket, the counts, group, conversionRate."""

    bucket: datetime | None
    group: str | None
    conversionRate: float | None


class StatsTotals(StatsCounts):
    """The counts over every row, then conversionRate."""

    conversionRate: float | None


class DeniedRangeDoc(TypedDict):
    range: str
    denied: int


class ShadowRuleDoc(TypedDict):
    rule: str
    matches: int
    wouldDeny: int
    wouldDenyAllowed: int
    wouldDenySuccessful: int
    spendWouldSave: dict[str, float]


class StatsDoc(TypedDict):
    since: datetime
    until: datetime
    bucket: Bucket | None
    groupBy: GroupBy | None
    rows: list[StatsRow]
    totals: StatsTotals
    topDeniedRanges: list[DeniedRangeDoc]
    shadowRules: list[ShadowRuleDoc]
