"""Callback intake: store every Sinch event, decide request events, answer within the deadline.

Inbox pattern: the inbox row's unique dedupe key makes a redelivery a no-op that returns
the stored answer. A request's decision is committed before its answer leaves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import AppError, BadRequest
from app.rules.engine import CompiledPolicy, Decision, evaluate
from app.rules.facts import Facts, derive_facts
from app.services.aggregates import Aggregator
from app.services.answers import build_answer
from app.services.policy import PolicyCache
from app.services.records import (
    callback_row,
    fallback_row,
    match_rows,
    request_row,
)
from app.settings import Settings
from app.sinch.events import (
    REQUEST_EVENT,
    RESULT_EVENT,
    SMS_DELIVERED_EVENT,
    VerificationRequestEvent,
    VerificationResultEvent,
    VerificationSmsDeliveredEvent,
)
from app.store import inbox

log = structlog.get_logger()
SUCCESSFUL = "SUCCESSFUL"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST to the callback path, as received."""

    body: bytes
    content_type: str | None
    app_key: str | None
    received_at: datetime
    signature: str = "valid"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: dict[str, Any] | None = None
    error: AppError | None = None
    duplicate: bool = False


class Intake:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        policies: PolicyCache,
        aggregator: Aggregator,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._policies = policies
        self._aggregator = aggregator
        self._deadline = settings.decision_deadline_ms / 1000
        self._background: set[asyncio.Task[None]] = set()

    async def reject(self, delivery: Delivery) -> None:
        """Keep a trace of a callback whose signature failed (no decision is made)."""
        if not self._settings.store_rejected_callbacks:
            return
        row = callback_row(delivery, status=401, error_code=delivery.signature, body_limit=4096)
        try:
            async with self._engine.begin() as conn:
                await inbox.add_callback(conn, row)
        except Exception:
            log.exception("callback.reject_store_failed")

    async def receive(self, delivery: Delivery) -> Reply:
        try:
            payload = json.loads(delivery.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return await self._refuse(delivery, "malformed_json", f"body is not JSON: {exc}")
        if not isinstance(payload, dict):
            return await self._refuse(delivery, "malformed_json", "body is not a JSON object")
        event = payload.get("event")
        if event == REQUEST_EVENT:
            return await self._request(delivery, payload)
        if event == RESULT_EVENT:
            return await self._result(delivery, payload)
        if event == SMS_DELIVERED_EVENT:
            return await self._delivered(delivery, payload)
        if not isinstance(event, str) or not event:
            errors = [{"loc": "event", "msg": "Field required"}]
            return await self._refuse(delivery, "invalid_event", "event: Field required", errors)
        return await self._unknown(delivery, payload, event)

    async def _refuse(
        self,
        delivery: Delivery,
        code: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Reply:
        """400: the raw body is stored anyway, so nothing Sinch sent is lost."""
        row = callback_row(delivery, status=400, error_code=code, payload=payload)
        async with self._engine.begin() as conn:
            await inbox.add_callback(conn, row)
        return Reply(status=400, error=BadRequest(detail, code=code, errors=errors))

    async def _invalid(
        self, delivery: Delivery, payload: dict[str, Any], exc: ValidationError
    ) -> Reply:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
        return await self._refuse(delivery, "invalid_event", detail, errors, payload)

    # -- request events -------------------------------------------------------------------

    async def _request(self, delivery: Delivery, payload: dict[str, Any]) -> Reply:
        try:
            event = VerificationRequestEvent.model_validate(payload)
        except ValidationError as exc:
            return await self._invalid(delivery, payload, exc)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                return await self._decide(delivery, event, started)
        except Exception as exc:
            log.warning("decision.fallback", verification_id=event.id, error=repr(exc))
            return self._fallback(delivery, event, started)

    async def _decide(
        self, delivery: Delivery, event: VerificationRequestEvent, started: float
    ) -> Reply:
        now = delivery.received_at
        async with self._engine.begin() as conn:
            row = callback_row(delivery, status=200, dedupe_key=f"{REQUEST_EVENT}:{event.id}")
            callback_id = await inbox.claim_callback(conn, row)
            if callback_id is None:
                return await self._repeat(conn, event.id)
            policy = await self._policies.current(conn)
            facts = await self._facts(conn, policy, event, delivery)
            decision = evaluate(policy, facts)
            await self._aggregator.settle(conn, policy, facts, allowed=decision.action == "allow")
            answer = build_answer(
                method=event.method, decision=decision, defaults=self._settings.answers
            )
            elapsed = (time.perf_counter() - started) * 1000
            await inbox.upsert_request(
                conn,
                request_row(
                    event,
                    delivery,
                    facts,
                    decision,
                    answer,
                    callback_id=callback_id,
                    elapsed_ms=elapsed,
                ),
            )
            await inbox.add_shadow_matches(conn, match_rows(event.id, decision, now))
        log.info(
            "decision.made",
            verification_id=event.id,
            action=decision.action,
            reason=decision.reason,
            rule=decision.rule,
        )
        return Reply(body=answer)

    async def _repeat(self, conn: AsyncConnection, verification_id: str) -> Reply:
        answer = await inbox.stored_answer(conn, verification_id)
        if answer is None:
            # Claimed but never decided: the first delivery's answer was the fallback.
            answer = {"action": self._settings.fallback_action}
        return Reply(body=answer, duplicate=True)

    async def _facts(
        self,
        conn: AsyncConnection,
        policy: CompiledPolicy,
        event: VerificationRequestEvent,
        delivery: Delivery,
    ) -> Facts:
        price, rate = event.price, event.rate
        facts = derive_facts(
            method=event.method,
            endpoint=event.identity.endpoint,
            price_amount=price.amount if price else None,
            price_currency=price.currency_id if price else None,
            rate_amount=rate.amount if rate else None,
            rate_currency=rate.currency_id if rate else None,
            reference=event.reference,
            custom=event.custom,
            application=delivery.app_key,
            now=delivery.received_at,
        )
        aggregates = await self._aggregator.observe(conn, policy, facts)
        return facts.with_aggregates(aggregates) if aggregates else facts

    def _fallback(
        self, delivery: Delivery, event: VerificationRequestEvent, started: float
    ) -> Reply:
        decision = Decision.fallback(self._settings.fallback_action)
        answer = build_answer(
            method=event.method, decision=decision, defaults=self._settings.answers
        )
        elapsed = (time.perf_counter() - started) * 1000
        task = asyncio.create_task(
            self._record_fallback(delivery, event, decision, answer, elapsed)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return Reply(body=answer)

    async def _record_fallback(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        decision: Decision,
        answer: dict[str, Any],
        elapsed: float,
    ) -> None:
        """Record what Sinch was told, even if the timed-out transaction did commit."""
        try:
            async with self._engine.begin() as conn:
                row = callback_row(delivery, status=200, dedupe_key=f"{REQUEST_EVENT}:{event.id}")
                callback_id = await inbox.claim_callback(conn, row)
                await inbox.upsert_request(
                    conn,
                    fallback_row(event, delivery, decision, answer, callback_id, elapsed),
                )
        except Exception:
            log.exception("decision.fallback_store_failed", verification_id=event.id)

    async def drain(self) -> None:
        """Wait for background writes (fallback records) before shutdown."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- result, delivery and unknown events ---------------------------------------------

    async def _result(self, delivery: Delivery, payload: dict[str, Any]) -> Reply:
        try:
            event = VerificationResultEvent.model_validate(payload)
        except ValidationError as exc:
            return await self._invalid(delivery, payload, exc)
        key = f"{RESULT_EVENT}:{event.id}:{event.status}:{event.reason or ''}:{event.source or ''}"
        async with self._engine.begin() as conn:
            if (
                await inbox.claim_callback(conn, callback_row(delivery, 200, dedupe_key=key))
                is None
            ):
                return Reply(duplicate=True)
            if event.status == SUCCESSFUL:
                await self._credit_success(conn, event.id)
            await inbox.upsert_result(conn, result_fields(event, delivery.received_at))
        return Reply()

    async def _credit_success(self, conn: AsyncConnection, verification_id: str) -> None:
        known = await inbox.verification_keys(conn, verification_id)
        if known is None or known["status"] == SUCCESSFUL or known["requested_at"] is None:
            return
        policy = await self._policies.current(conn)
        await self._aggregator.succeeded(conn, policy, known)

    async def _delivered(self, delivery: Delivery, payload: dict[str, Any]) -> Reply:
        try:
            event = VerificationSmsDeliveredEvent.model_validate(payload)
        except ValidationError as exc:
            return await self._invalid(delivery, payload, exc)
        key = f"{SMS_DELIVERED_EVENT}:{event.id}:{event.sms_result}"
        async with self._engine.begin() as conn:
            if (
                await inbox.claim_callback(conn, callback_row(delivery, 200, dedupe_key=key))
                is None
            ):
                return Reply(duplicate=True)
            row = inbox.verification_stub(event.id, delivery.received_at)
            row |= {"sms_result": event.sms_result, "sms_delivered_at": delivery.received_at}
            await inbox.upsert_delivery(conn, row)
        return Reply()

    async def _unknown(self, delivery: Delivery, payload: dict[str, Any], event: str) -> Reply:
        """Never fail on an event type we do not know: keep it and say 200."""
        digest = hashlib.sha256(delivery.body).hexdigest()[:32]
        raw_id = payload.get("id")
        ident = raw_id if isinstance(raw_id, str) else ""
        row = callback_row(delivery, 200, dedupe_key=f"{event[:64]}:{ident[:128]}:{digest}")
        async with self._engine.begin() as conn:
            duplicate = await inbox.claim_callback(conn, row) is None
        log.info("callback.unknown_event", event_type=event[:64])
        return Reply(duplicate=duplicate)


def result_fields(event: VerificationResultEvent, now: datetime) -> dict[str, Any]:
    return inbox.verification_stub(event.id, now) | {
        "method": event.method,
        "number": event.identity.endpoint if event.identity else None,
        "reference": event.reference,
        "custom": event.custom,
        "status": event.status,
        "status_reason": event.reason,
        "status_source": event.source,
        "result_at": now,
    }
