"""Parsing a callback into its route: a request event to decide, or how to store it.

Shared by intake (a callback as it comes) and replay (a spooled callback, stored as it
would have been when it came); it needs neither.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import BadRequest, error_detail
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.outcomes import Outcomes
from app.services.intake.records import callback_row
from app.sinch.events import (
    REQUEST_EVENT,
    RESULT_EVENT,
    SMS_DELIVERED_EVENT,
    VerificationRequestEvent,
    VerificationResultEvent,
    VerificationSmsDeliveredEvent,
    contains_nul,
)
from app.store import inbox
from app.store.rows import CallbackClaim

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


class Router:
    def __init__(self, *, engine: AsyncEngine, outcomes: Outcomes) -> None:
        self._engine = engine
        self._outcomes = outcomes

    async def close(self) -> None:
        """Write what is queued to be stored (at shutdown, after the last callback)."""
        await self._outcomes.close()

    async def store(self, delivery: Delivery) -> Reply:
        """Store a spooled callback as it would have been stored when it came."""
        route = self.route(delivery)
        if route.store is None:
            raise ValueError("a request event was spooled as a plain callback")
        return await route.store()

    def route(self, delivery: Delivery) -> Route:
        try:
            payload = json.loads(delivery.body)
        except (ValueError, RecursionError) as exc:
            # ValueError: not UTF-8, not JSON, or an integer of more than 4300 digits;
            # RecursionError: nested deeper than the parser goes.
            detail = f"body is not JSON: {exc}"[:300]
            return self._refusal(delivery, "malformed_json", detail)
        if not isinstance(payload, dict):
            return self._refusal(delivery, "malformed_json", "body is not a JSON object")
        if contains_nul(payload):
            detail = "body has a NUL character (U+0000), which no Sinch field holds"
            return self._refusal(delivery, "malformed_json", detail)
        event, ident = payload.get("event"), payload.get("id")
        ident = ident[:128] if isinstance(ident, str) else None
        try:
            if event == REQUEST_EVENT:
                request = VerificationRequestEvent.model_validate(payload)
                return Route("request", ident, request=request)
            if event == RESULT_EVENT:
                result = VerificationResultEvent.model_validate(payload)
                store = partial(self._outcomes.result, delivery, result)
                return Route("result", ident, store=store)
            if event == SMS_DELIVERED_EVENT:
                receipt = VerificationSmsDeliveredEvent.model_validate(payload)
                store = partial(self._outcomes.delivered, delivery, receipt)
                return Route("sms_delivered", ident, store=store)
        except ValidationError as exc:
            return self._invalid(delivery, payload, exc)
        if not isinstance(event, str) or not event:
            errors = [{"loc": "event", "msg": "Field required"}]
            return self._refusal(delivery, "invalid_event", "event: Field required", errors)
        store = partial(self._outcomes.unknown, delivery, payload, event)
        return Route("other", ident, store=store)

    def _invalid(self, delivery: Delivery, payload: dict[str, Any], exc: ValidationError) -> Route:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        return self._refusal(delivery, "invalid_event", error_detail(errors), errors, payload)

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
