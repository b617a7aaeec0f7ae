"""Rows the intake stores: inbox entries, decided verifications, shadow matches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic_core import to_json

from app.rules.decision import trace_json
from app.rules.engine import Decision
from app.rules.facts import Facts, facts_to_json
from app.services.intake.deliveries import Delivery
from app.sinch.events import VerificationRequestEvent
from app.store.rows import CallbackClaim, MatchRow, RequestRow
from app.store.tables import string_length, verifications

# Wire fields that may be longer than their column (an invalid endpoint up to 64 characters
# in `number`, a reference up to 4,096 in `reference`): cut here, the same on every backend,
# so no store stores more than another or refuses the row (the inbox keeps the raw body).
_NUMBER_MAX = string_length(verifications, "number")
_REFERENCE_MAX = string_length(verifications, "reference")


def callback_row(
    delivery: Delivery,
    status: int,
    *,
    event: str | None = None,
    verification_id: str | None = None,
    dedupe_key: str | None = None,
    error_code: str | None = None,
    payload: dict[str, Any] | None = None,
    body_limit: int | None = None,
) -> CallbackClaim:
    """An inbox row; `event` and `verification_id` default to the payload's, when given."""
    payload = payload or {}
    if event is None and isinstance(payload.get("event"), str):
        event = payload["event"]
    if verification_id is None and isinstance(payload.get("id"), str):
        verification_id = payload["id"]
    body = delivery.body if body_limit is None else delivery.body[:body_limit]
    return CallbackClaim(
        received_at=delivery.received_at,
        app_key=delivery.app_key,
        event=event[:64] if event else None,
        verification_id=verification_id[:128] if verification_id else None,
        dedupe_key=dedupe_key,
        signature=delivery.signature,
        http_status=status,
        error_code=error_code,
        content_type=(delivery.content_type or "")[:255] or None,
        raw_body=body,
    )


def request_row(
    event: VerificationRequestEvent,
    delivery: Delivery,
    facts: Facts,
    decision: Decision,
    answer: dict[str, Any],
    *,
    callback_id: int | None,
    elapsed_ms: float,
    degraded: bool = False,
    document: bool = True,
) -> RequestRow:
    """The decided verification (`inbox.store_decision` links it to the claim it stores).

    `document=False` leaves `decision` empty, for a store given it already encoded
    (`decision_json`, as every lane does): building the dict only to encode it cost
    ~20 µs a decision."""
    price, rate, now = event.price, event.rate, delivery.received_at
    return RequestRow(
        id=event.id,
        created_at=now,
        degraded=degraded,
        app_key=delivery.app_key,
        method=event.method,
        number=(facts.number or event.identity.endpoint)[:_NUMBER_MAX],
        country=facts.country,
        calling_code=facts.calling_code,
        number_type=facts.number_type,
        number_valid=facts.valid,
        price_amount=price.amount if price else None,
        price_currency=price.currency_id if price else None,
        rate_amount=rate.amount if rate else None,
        rate_currency=rate.currency_id if rate else None,
        reference=event.reference[:_REFERENCE_MAX] if event.reference else event.reference,
        custom=event.custom,
        requested_at=now,
        request_callback_id=callback_id,
        action=decision.action,
        reason=decision.reason,
        decided_by=decision.mode,
        rule_id=decision.rule_id,
        rule_name=decision.rule,
        rule_revision=decision.rule_revision,
        shadow_deny=any(m.action == "deny" for m in decision.shadow),
        answer=answer,
        decided_at=now,
        decision_ms=round(elapsed_ms, 3),
        decision=decision_document(decision, facts) if document else {},
    )


def decision_document(decision: Decision, facts: Facts | None) -> dict[str, Any]:
    """The decision as stored: enough to explain it and to replay it."""
    document = decision.model_dump(mode="json")
    if facts is not None:
        document["facts"] = facts_to_json(facts)
    return document


def decision_json(decision: Decision, facts: Facts) -> bytes:
    """`decision_document(decision, facts)` as JSON (UTF-8), the same bytes as
    `to_json(decision_document(...))`, encoded in one pass (no dict in between). Bytes, as
    the store sends them: the trace's text holds non-ASCII (a multiplication sign), and
    decoding it to a str only for the driver to encode it again cost ~76k instructions a
    decision."""
    encoded = _DECISION.to_json(decision, exclude=_TRACE)
    # The trace goes where the model puts it, before the aggregates: no text before them
    # holds the key (an encoded string holds no bare quote), so the first match is the key.
    at = encoded.index(_AFTER_TRACE)
    trace = trace_json(decision.trace)
    facts_text = to_json(facts_to_json(facts))
    return b'%b,"trace":%b%b,"facts":%b}' % (encoded[:at], trace, encoded[at:-1], facts_text)


# The model's serializer called as model_dump_json calls it, without the wrapper's sixteen
# keywords passed through (~7k instructions a decision, a third of the encoding).
_DECISION = Decision.__pydantic_serializer__
_TRACE = {"trace"}
_AFTER_TRACE = b',"aggregates":'


def match_rows(verification_id: str, decision: Decision, now: datetime) -> list[MatchRow]:
    return [
        MatchRow(
            verification_id=verification_id,
            rule_id=match.rule_id,
            rule_name=match.rule,
            rule_revision=match.rule_revision,
            action=match.action,
            reason=match.reason,
            matched_at=now,
        )
        for match in decision.shadow
    ]
