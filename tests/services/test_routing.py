"""Routing a callback body: the one-step parse of Sinch's three events (`_at_once`) takes a
body only as the full parse would, as the same event; everything else goes the full way.
A request event's id read without parsing it (`request_id`, for admission to shed it unread)
is the id the parse finds, whenever the parse finds a request event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.services.intake.deliveries import Delivery
from app.services.intake.routing import _EVENTS, Router, _at_once, names_request, request_id
from app.sinch import samples
from app.sinch.events import VerificationRequestEvent

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SAMPLES = [
    samples.request_event(number="+46700000000", verification_id="v-1", price=0.0453),
    samples.result_event(verification_id="v-1", number="+46700000000"),
    samples.delivered_event(verification_id="v-1", number="+46700000000"),
]
# Texts JSON parsers disagree on: NUL escaped and raw, surrogates, control characters, huge
# integers, non-finite numbers, trailing data, a byte-order mark.
ODD = [
    "\\u0000",
    "\x00",
    "\\ud800",
    "\\ud800\\udc00",
    "\t",
    "9" * 5000,
    "1e400",
    "NaN",
    "Infinity",
    "}{",
    "\ufeff",
    '"VerificationRequestEvent"',
    '"VerificationResultEvent"',
]


def full_parse(body: bytes) -> Any:
    """What the full path makes of a body: the validated event, or None where it refuses."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    for name, model in _EVENTS:
        if payload.get("event") == name:
            try:
                return model.model_validate(payload)
            except ValidationError:
                return None
    return None


def route(body: bytes) -> Any:
    router = Router(engine=None, outcomes=None)  # type: ignore[arg-type]  # never stores here
    return router.route(Delivery(body, "application/json", "key", NOW))


def test_each_event_is_taken_at_once_as_the_full_parse_takes_it() -> None:
    for event in SAMPLES:
        body = json.dumps(event).encode()
        quick = _at_once(body)
        assert quick is not None and quick == full_parse(body)


def test_a_nul_anywhere_goes_the_full_way_and_is_refused() -> None:
    event = {**SAMPLES[0], "custom": "a\x00b"}
    body = json.dumps(event).encode()
    assert b"\\u0000" in body and _at_once(body) is None
    assert route(body).event == "invalid"


@settings(max_examples=300, deadline=None)
@given(
    which=st.sampled_from(SAMPLES),
    key=st.sampled_from(["id", "method", "custom", "reference", "x", "identity", "price"]),
    odd=st.sampled_from(ODD),
    where=st.sampled_from(["value", "string", "append"]),
)
def test_a_body_taken_at_once_is_taken_the_same_by_the_full_parse(
    which: dict[str, Any], key: str, odd: str, where: str
) -> None:
    text = json.dumps(which)
    if where == "value":
        text = text[:-1] + f', "{key}": {odd}}}'
    elif where == "string":
        text = text[:-1] + f', "{key}": "{odd}"}}'
    else:
        text += odd
    body = text.encode("utf-8", "surrogatepass")
    quick = _at_once(body)
    full = full_parse(body)
    if quick is not None:
        assert repr(quick) == repr(full)  # repr: NaN equals no NaN
    ident = request_id(body) if names_request(body) else None
    if isinstance(full, VerificationRequestEvent):
        assert ident in (None, full.id)
    elif which is not SAMPLES[0]:
        assert ident is None, "another event is never taken for a request event"


def test_a_request_events_id_is_read_without_parsing_it_only_where_plain() -> None:
    event = SAMPLES[0]
    compact = json.dumps(event, separators=(",", ":"))
    assert request_id(compact.encode()) == request_id(json.dumps(event).encode()) == "v-1"
    spaced = json.dumps(event, indent=2)
    assert request_id(spaced.encode()) == "v-1"
    refused = {
        "an id escaped": {**event, "id": 'v"1'},
        "an id too long": {**event, "id": "v" * 129},
        "an id not a string": {**event, "id": 17},
        "a second id key": {**event, "identity": {"id": "x", "endpoint": "+46700000000"}},
        "no event key": {k: v for k, v in event.items() if k != "event"},
        "a second event key": {**event, "x": {"event": "VerificationRequestEvent"}},
        "another event named by a field": {**SAMPLES[1], "custom": "VerificationRequestEvent"},
    }
    for why, body in refused.items():
        text = json.dumps(body).encode()
        assert not names_request(text) or request_id(text) is None, why


def test_no_string_field_makes_another_event_look_like_a_request_event() -> None:
    """Admission is asked before the parse only for a body that names the request event as
    its `event`: a string (custom, reference: the app's own text) cannot, its quotes
    escaped."""
    for forged in ("VerificationRequestEvent", '"event":"VerificationRequestEvent"'):
        for field in ("custom", "reference"):
            body = json.dumps({**SAMPLES[1], field: forged}).encode()
            assert not names_request(body), (field, forged)
    assert names_request(json.dumps(SAMPLES[0]).encode())
