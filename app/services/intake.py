"""Callback intake: parse and dispatch every Sinch event; nothing Sinch sends is lost.

Bodies that are not JSON or lack required fields get a 400 but are stored raw. Request
events are decided (decide.py); results and receipts are stored (outcomes.py).
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import BadRequest, ServiceUnavailable
from app.services.aggregates import Aggregator, Counting
from app.services.decide import Decider
from app.services.deliveries import Delivery, Reply
from app.services.outcomes import Outcomes
from app.services.policy import PolicyCache
from app.services.records import callback_row
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
__all__ = ["Delivery", "Intake", "Reply"]


class Intake:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        counting: Counting,
        settings: Settings,
        policies: PolicyCache,
        aggregator: Aggregator,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self.decider = Decider(
            engine=engine,
            counting=counting,
            settings=settings,
            policies=policies,
            aggregator=aggregator,
        )
        self.outcomes = Outcomes(
            engine=engine, counting=counting, policies=policies, aggregator=aggregator
        )

    async def reject(self, delivery: Delivery) -> None:
        """Keep a trace of a callback whose signature failed (no decision is made)."""
        if not self._settings.store_rejected_callbacks:
            return
        row = callback_row(delivery, 401, error_code=delivery.signature, body_limit=4096)
        try:
            async with self._engine.begin() as conn:
                await inbox.add_callback(conn, row)
        except Exception:
            log.exception("callback.reject_store_failed")

    async def receive(self, delivery: Delivery) -> Reply:
        try:
            return await self._dispatch(delivery)
        except Exception:
            # Only non-request events reach here (requests fall back): ask Sinch to retry.
            log.exception("callback.store_failed")
            return Reply(status=503, error=ServiceUnavailable("The event could not be stored."))

    async def drain(self) -> None:
        await self.decider.drain()

    async def _dispatch(self, delivery: Delivery) -> Reply:
        try:
            payload = json.loads(delivery.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return await self._refuse(delivery, "malformed_json", f"body is not JSON: {exc}")
        if not isinstance(payload, dict):
            return await self._refuse(delivery, "malformed_json", "body is not a JSON object")
        event = payload.get("event")
        try:
            if event == REQUEST_EVENT:
                request = VerificationRequestEvent.model_validate(payload)
                return await self.decider.decide(delivery, request)
            if event == RESULT_EVENT:
                result = VerificationResultEvent.model_validate(payload)
                return await self.outcomes.result(delivery, result)
            if event == SMS_DELIVERED_EVENT:
                receipt = VerificationSmsDeliveredEvent.model_validate(payload)
                return await self.outcomes.delivered(delivery, receipt)
        except ValidationError as exc:
            return await self._invalid(delivery, payload, exc)
        if not isinstance(event, str) or not event:
            errors = [{"loc": "event", "msg": "Field required"}]
            return await self._refuse(delivery, "invalid_event", "event: Field required", errors)
        return await self.outcomes.unknown(delivery, payload, event)

    async def _invalid(
        self, delivery: Delivery, payload: dict[str, Any], exc: ValidationError
    ) -> Reply:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
        return await self._refuse(delivery, "invalid_event", detail, errors, payload)

    async def _refuse(
        self,
        delivery: Delivery,
        code: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Reply:
        """400: the raw body is stored anyway, so nothing Sinch sent is lost."""
        row = callback_row(delivery, 400, error_code=code, payload=payload)
        async with self._engine.begin() as conn:
            await inbox.add_callback(conn, row)
        return Reply(status=400, error=BadRequest(detail, code=code, errors=errors))
