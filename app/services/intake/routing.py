"""Parsing a callback into its route: a request event to decide, or how to store it.

Shared by intake (a callback as it comes) and replay (a spooled callback, stored as it
would have been when it came); it needs neither.
"""

from __future__ import annotations

import json
import re
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
_REQUEST_COMPACT = b'"event":"VerificationRequestEvent"'
_REQUEST_NAMED = re.compile(rb'"event"\s*:\s*"VerificationRequestEvent"')
_EVENT_KEY = b'"event"'
_ID_KEY = b'"id"'
_PLAIN_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,128})"')


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

    def route(self, delivery: Delivery, *, answered: int = 400) -> Route:
        """`answered`: the status a refused body is recorded with (what it was answered: a
        request event shed before it was parsed got the fallback, resilience/outage.py)."""
        event = _at_once(delivery.body)
        if event is not None:
            return self._known(delivery, event)
        try:
            payload = json.loads(delivery.body)
        except (ValueError, RecursionError) as exc:
            # ValueError: not UTF-8, not JSON, or an integer of more than 4300 digits;
            # RecursionError: nested deeper than the parser goes.
            detail = f"body is not JSON: {exc}"[:300]
            return self._refusal(delivery, answered, "malformed_json", detail)
        if not isinstance(payload, dict):
            detail = "body is not a JSON object"
            return self._refusal(delivery, answered, "malformed_json", detail)
        if contains_nul(payload):
            detail = "body has a NUL character (U+0000), which no Sinch field holds"
            return self._refusal(delivery, answered, "malformed_json", detail)
        name, ident = payload.get("event"), payload.get("id")
        ident = ident[:128] if isinstance(ident, str) else None
        try:
            for event_name, model in _EVENTS:
                if name == event_name:
                    return self._known(delivery, model.model_validate(payload))
        except ValidationError as exc:
            return self._invalid(delivery, answered, payload, exc)
        if not isinstance(name, str) or not name:
            errors = [{"loc": "event", "msg": "Field required"}]
            detail = "event: Field required"
            return self._refusal(delivery, answered, "invalid_event", detail, errors)
        store = partial(self._outcomes.unknown, delivery, payload, name)
        return Route("other", ident, store=store)

    def _known(self, delivery: Delivery, event: Event) -> Route:
        if isinstance(event, VerificationRequestEvent):
            return Route("request", event.id, request=event)
        if isinstance(event, VerificationResultEvent):
            return Route("result", event.id, store=partial(self._outcomes.result, delivery, event))
        store = partial(self._outcomes.delivered, delivery, event)
        return Route("sms_delivered", event.id, store=store)

    def _invalid(
        self, delivery: Delivery, answered: int, payload: dict[str, Any], exc: ValidationError
    ) -> Route:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        detail = error_detail(errors)
        return self._refusal(delivery, answered, "invalid_event", detail, errors, payload)

    def _refusal(
        self,
        delivery: Delivery,
        answered: int,
        code: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Route:
        """400: the raw body is stored anyway, so nothing Sinch sent is lost."""
        reply = Reply(status=400, error=BadRequest(detail, code=code, errors=errors))
        row = callback_row(delivery, answered, error_code=code, payload=payload)
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


def names_request(body: bytes) -> bool:
    """Whether an `event` key in `body` names the request event: its JSON text, which no
    string field can forge (a quote inside a string is escaped). Every request event's body
    but an oddly escaped one; a body of another event only where Sinch nested the key."""
    # The compact form first: a find is 1.5k instructions, the search 3.3k.
    return body.find(_REQUEST_COMPACT) >= 0 or _REQUEST_NAMED.search(body) is not None


def request_id(body: bytes) -> str | None:
    """The id of the request event a body `names_request` took plainly is, read without
    parsing it: its one `event` key and its one `"id"` key, holding a plain string (1 to 128
    characters, no escape). None for anything else, which `Router.route` then parses.

    For admission to shed it unread (dispatch.py): pydantic's parse is ~35k instructions,
    this ~9k. A body taken here may still not be a valid request event (a field missing or
    malformed): replay finds that, and stores it as its route says (resilience/replay.py)."""
    if body.count(_ID_KEY) != 1 or body.count(_EVENT_KEY) != 1:
        return None
    found = _PLAIN_ID.search(body)
    if found is None:
        return None
    try:
        return found.group(1).decode()
    except UnicodeDecodeError:
        return None
