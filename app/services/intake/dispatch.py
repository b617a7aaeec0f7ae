"""Callback intake: parse and dispatch every Sinch event; nothing Sinch sends is lost.

Bodies that are not JSON or lack required fields get a 400 but are stored raw. Request
events are decided (decide.py); results and receipts are stored (outcomes.py), or spooled
while the database is away (resilience/).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from app import metrics
from app.errors import BadRequest, ServiceUnavailable
from app.services.aggregates import Aggregator, Counting
from app.services.intake.decide import Decider
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.outcomes import Outcomes
from app.services.intake.records import callback_row
from app.services.intake.reporting import callback_received
from app.services.policy.cache import PolicyCache
from app.services.resilience import Outage
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
from app.store.rows import CallbackClaim

log = structlog.get_logger()
__all__ = ["Delivery", "Intake", "Reply"]


Store = Callable[[], Awaitable[Reply]]
OK = Reply()


@dataclass(frozen=True, slots=True)
class Route:
    """A parsed callback: a request event to decide, or how to store it and what to reply."""

    event: str  # a metric label: request, result, sms_delivered, other or invalid
    verification_id: str | None
    request: VerificationRequestEvent | None = None
    store: Store | None = None
    reply: Reply = OK


class Intake:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        counting: Counting,
        settings: Settings,
        policies: PolicyCache,
        aggregator: Aggregator,
        engines: list[AsyncEngine] | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self.outage = Outage(
            settings=settings,
            engines=engines or [engine],
            counting=counting,
            policies=policies,
            aggregator=aggregator,
        )
        self.decider = Decider(
            engine=engine,
            counting=counting,
            settings=settings,
            policies=policies,
            aggregator=aggregator,
            outage=self.outage,
        )
        self.outcomes = Outcomes(
            engine=engine, counting=counting, policies=policies, aggregator=aggregator
        )
        self.outage.replayer.callbacks = self._replay

    async def start(self) -> None:
        """Open the spool (and replay what a previous run left in it)."""
        await self.outage.start()

    async def reject(self, delivery: Delivery) -> None:
        """Keep a trace of a callback whose signature failed (no decision is made)."""
        metrics.SIGNATURE_FAILURES.labels(delivery.signature).inc()
        log.warning("callback.rejected", cause=delivery.signature, app_key=delivery.app_key)
        if not self._settings.store_rejected_callbacks or self.outage.down:
            return
        row = callback_row(delivery, 401, error_code=delivery.signature, body_limit=4096)
        try:
            async with self._engine.begin() as conn:
                await inbox.add_callback(conn, row)
        except Exception:
            log.exception("callback.reject_store_failed")

    async def receive(self, delivery: Delivery) -> Reply:
        started = time.perf_counter()
        route = self._route(delivery)
        if route.request is not None:
            return await self.decider.decide(delivery, route.request)
        assert route.store is not None
        spooled = False
        try:
            reply, spooled = await self.outage.keep(delivery, route.store, route.reply)
        except Exception:
            # Neither stored nor spooled: ask Sinch to retry.
            log.exception("callback.store_failed")
            reply = Reply(status=503, error=ServiceUnavailable("The event could not be stored."))
        outcome = "spooled" if spooled else _outcome(reply)
        callback_received(route.event, route.verification_id, reply.status, outcome, started)
        return reply

    async def drain(self) -> None:
        """Let late decisions finish, and write what the spool holds (the app runs on)."""
        await self.decider.drain()
        await self.outage.flush()

    async def close(self) -> None:
        """At shutdown: late decisions finish, a last replay, the spool closed."""
        await self.decider.drain()
        await self.outage.close()

    async def _replay(self, delivery: Delivery) -> Reply:
        """Store a spooled callback as it would have been stored when it came."""
        route = self._route(delivery)
        if route.store is None:
            raise ValueError("a request event was spooled as a plain callback")
        return await route.store()

    def _route(self, delivery: Delivery) -> Route:
        try:
            payload = json.loads(delivery.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._refusal(delivery, "malformed_json", f"body is not JSON: {exc}")
        if not isinstance(payload, dict):
            return self._refusal(delivery, "malformed_json", "body is not a JSON object")
        event, ident = payload.get("event"), payload.get("id")
        ident = ident[:128] if isinstance(ident, str) else None
        try:
            if event == REQUEST_EVENT:
                request = VerificationRequestEvent.model_validate(payload)
                return Route("request", ident, request=request)
            if event == RESULT_EVENT:
                result = VerificationResultEvent.model_validate(payload)
                store = partial(self.outcomes.result, delivery, result)
                return Route("result", ident, store=store)
            if event == SMS_DELIVERED_EVENT:
                receipt = VerificationSmsDeliveredEvent.model_validate(payload)
                store = partial(self.outcomes.delivered, delivery, receipt)
                return Route("sms_delivered", ident, store=store)
        except ValidationError as exc:
            return self._invalid(delivery, payload, exc)
        if not isinstance(event, str) or not event:
            errors = [{"loc": "event", "msg": "Field required"}]
            return self._refusal(delivery, "invalid_event", "event: Field required", errors)
        return Route("other", ident, store=partial(self.outcomes.unknown, delivery, payload, event))

    def _invalid(self, delivery: Delivery, payload: dict[str, Any], exc: ValidationError) -> Route:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
        return self._refusal(delivery, "invalid_event", detail, errors, payload)

    def _refusal(
        self,
        delivery: Delivery,
        code: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Route:
        """400: the raw body is stored anyway, so nothing Sinch sent is lost."""
        reply = Reply(status=400, error=BadRequest(detail, code=code, errors=errors))
        row = callback_row(delivery, 400, error_code=code, payload=payload)
        ident = row.verification_id
        return Route("invalid", ident, store=partial(self._keep_raw, row, reply), reply=reply)

    async def _keep_raw(self, row: CallbackClaim, reply: Reply) -> Reply:
        async with self._engine.begin() as conn:
            await inbox.add_callback(conn, row)
        return reply


def _outcome(reply: Reply) -> str:
    if reply.status >= 500:
        return "failed"
    if reply.status >= 400:
        return "invalid"
    return "duplicate" if reply.duplicate else "stored"
