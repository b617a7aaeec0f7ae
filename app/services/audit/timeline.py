"""A verification's timeline: each callback as received, with our decision after the request."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.audit.documents import (
    CallbackEvent,
    CallbackKind,
    DecisionEvent,
    RuleRevisionDoc,
    ShadowMatchDoc,
    TimelineEvent,
)
from app.services.audit.view import iso, parse_body
from app.store import audit as store
from app.store.audit_rows import RuleAtRevision, ShadowMatch, StoredCallback, Verification

_KINDS: dict[str, CallbackKind] = {
    "VerificationRequestEvent": "request",
    "VerificationResultEvent": "result",
    "VerificationSmsDeliveredEvent": "sms_delivered",
}


async def timeline_events(conn: AsyncConnection, row: Verification) -> list[TimelineEvent]:
    """Callbacks in arrival order; the decision follows the request it answered."""
    callbacks = [_callback_event(cb) for cb in await store.callbacks_of(conn, row.id)]
    events: list[TimelineEvent] = list(callbacks)
    if row.action is None:
        return events
    decision = await _decision_event(conn, row)
    events.insert(_after_request(callbacks, row.request_callback_id), decision)
    return events


def _after_request(events: list[CallbackEvent], callback_id: int | None) -> int:
    for index, event in enumerate(events):
        if event["callbackId"] == callback_id or (
            callback_id is None and event["kind"] == "request"
        ):
            return index + 1
    return len(events)


def _callback_event(cb: StoredCallback) -> CallbackEvent:
    body, text = parse_body(cb.raw_body)
    return {
        "at": iso(cb.received_at),
        "kind": _KINDS.get(cb.event or "", "other"),
        "event": cb.event,
        "callbackId": cb.id,
        "application": cb.app_key,
        "signature": cb.signature,
        "httpStatus": cb.http_status,
        "errorCode": cb.error_code,
        "contentType": cb.content_type,
        "body": body,
        "rawText": text,
    }


async def _decision_event(conn: AsyncConnection, row: Verification) -> DecisionEvent:
    document = row.decision or {}  # the decision as stored: a JSON document
    rule_id, revision = row.rule_id, row.rule_revision
    definition = None
    if rule_id is not None and revision is not None:
        definition = await store.rule_revision(conn, rule_id, revision)
    return {
        "at": iso(row.decided_at),
        "kind": "decision",
        "action": row.action,
        "reason": row.reason,
        "decidedBy": row.decided_by,
        "rule": row.rule_name,
        "ruleId": rule_id,
        "ruleRevision": revision,
        "ruleDefinition": _revision(definition),
        "policyVersion": document.get("policy_version"),
        "decisionMs": row.decision_ms,
        "degraded": bool(row.degraded),
        "answer": row.answer,
        "shadowMatches": [_match(m) for m in await store.shadow_matches(conn, row.id)],
        "trace": document.get("trace", []),
        "aggregates": document.get("aggregates", {}),
        "facts": document.get("facts"),
    }


def _revision(found: RuleAtRevision | None) -> RuleRevisionDoc | None:
    if found is None:
        return None
    return {
        "rule": found.rule_name,
        "revision": found.revision,
        "change": found.change,
        "actor": found.actor,
        "changedAt": iso(found.changed_at),
        "definition": found.after,
    }


def _match(match: ShadowMatch) -> ShadowMatchDoc:
    return {
        "rule": match.rule_name,
        "ruleId": match.rule_id,
        "ruleRevision": match.rule_revision,
        "action": match.action,
        "reason": match.reason,
        "matchedAt": iso(match.matched_at),
    }
