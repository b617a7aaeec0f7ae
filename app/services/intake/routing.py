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
Event = VerificationRequestEvent | VerificationResultEvent | VerificationSmsDeliveredEvent
_EVENTS: tuple[tuple[str, type[Event]], ...] = (
    (REQUEST_EVENT, VerificationRequestEvent),
    (RESULT_EVENT, VerificationResultEvent),
    (SMS_DELIVERED_EVENT, VerificationSmsDeliveredEvent),
)
_MARKS = tuple((f'"{name}"'.encode(), model) for name, model in _EVENTS)


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
        event = _at_once(delivery.body)
        if event is not None:
            return self._known(delivery, event)
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
        name, ident = payload.get("event"), payload.get("id")
        ident = ident[:128] if isinstance(ident, str) else None
        try:
            for event_name, model in _EVENTS:
                if name == event_name:
                    return self._known(delivery, model.model_validate(payload))
        except ValidationError as exc:
            return self._invalid(delivery, payload, exc)
        if not isinstance(name, str) or not name:
            errors = [{"loc": "event", "msg": "Field required"}]
            return self._refusal(delivery, "invalid_event", "event: Field required", errors)
        store = partial(self._outcomes.unknown, delivery, payload, name)
        return Route("other", ident, store=store)

    def _known(self, delivery: Delivery, event: Event) -> Route:
        if isinstance(event, VerificationRequestEvent):
            return Route("request", event.id, request=event)
        if isinstance(event, VerificationResultEvent):
            return Route("result", event.id, store=partial(self._outcomes.result, delivery, event))
        store = partial(self._outcomes.delivered, delivery, event)
        return Route("sms_delivered", event.id, store=store)

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


def _at_once(body: bytes) -> Event | None:
    """One of Sinch's three events parsed and validated in one step by pydantic's JSON parser
    (64k fewer instructions per request event than json.loads, the NUL walk and
    model_validate: bench/http_side.py under callgrind), when the body plainly is one: its
    name in it and no NUL, escaped or raw, anywhere. None for anything else: `route` then
    parses it in full and says what is wrong, as before (a body taken here is taken there,
    as the same event).

    `body.find(x) < 0`, not `x not in body`: bytes' `in` first tries its operand as an
    integer (a byte value) and formats the TypeError that says it is not one, ~1.8k
    instructions a test (CPython's _Py_bytes_contains); `find` takes a bytes operand as is."""
    if body.find(b"\\u0000") >= 0 or body.find(b"\x00") >= 0:
        return None
    for mark, model in _MARKS:
        if body.find(mark) >= 0:
            try:
                return model.model_validate_json(body)
            except ValidationError:
                return None
    return None
