"""The callback parser under hypothesis: signed bodies of any shape (wrong types, deep nesting,
huge strings, invalid UTF-8, duplicate keys, numbers beyond float range) never get a 5xx, and a
request event answered 200 always carries `allow` or `deny`. Signed as Sinch signs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import VerificationRow
from tests.support import SinchSender

EVENTS = ["VerificationRequestEvent", "VerificationResultEvent", "VerificationSmsDeliveredEvent"]
FIELDS = [
    "id",
    "event",
    "method",
    "identity",
    "price",
    "rate",
    "reference",
    "custom",
    "status",
    "reason",
    "source",
    "smsResult",
    "acceptLanguage",
    "endpoint",
    "amount",
    "currencyId",
    "type",
]
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

weird_numbers = st.sampled_from(["1e400", "-1e400", "1e-400", "9" * 5000, "-0", "NaN", "Infinity"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.text(alphabet=st.characters(), min_size=1000, max_size=5000)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)


def _valid_request(ident: str) -> dict[str, Any]:
    return {
        "id": ident,
        "event": "VerificationRequestEvent",
        "method": "sms",
        "identity": {"type": "number", "endpoint": "+46701234567"},
        "price": {"currencyId": "EUR", "amount": 0.05},
    }


@st.composite
def shaped_events(draw: st.DrawFn) -> dict[str, Any]:
    """A known event with some fields replaced by any JSON (wrong types, nesting, long text)."""
    event = _valid_request(draw(st.text(min_size=1, max_size=40)))
    event["event"] = draw(st.sampled_from(EVENTS) | st.text(max_size=20))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        event[field] = draw(json_values)
    return event


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Text that is not quite JSON Sinch would send: odd numbers, duplicate keys, NULs, bytes."""
    kind = draw(st.sampled_from(["number", "duplicate", "nul", "bytes", "nesting", "truncated"]))
    ident = draw(st.text(alphabet="abc123", min_size=1, max_size=12))
    if kind == "number":
        return (
            f'{{"id":"{ident}","event":"VerificationRequestEvent","method":"sms",'
            '"identity":{"type":"number","endpoint":"+46701234567"},'
            f'"price":{{"currencyId":"EUR","amount":{draw(weird_numbers)}}}}}'
        ).encode()
    if kind == "duplicate":
        return (
            f'{{"id":"{ident}","event":"VerificationRequestEvent","event":"VerificationResultEvent",'
            '"method":"sms","method":"callout","identity":{"endpoint":"+46701234567"},'
            '"identity":{"endpoint":"+447700900123"},"status":"SUCCESSFUL"}'
        ).encode()
    if kind == "nul":
        event = _valid_request(ident + "\x00")
        event["reference"] = "ref\x00erence"
        return json.dumps(event).encode()
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "nesting":
        depth = draw(st.integers(min_value=500, max_value=100_000))
        return (
            b'{"id":"x","event":"VerificationRequestEvent","custom":'
            + b"[" * depth
            + b"]" * depth
            + b"}"
        )
    body = json.dumps(_valid_request(ident)).encode()
    return body[: draw(st.integers(min_value=0, max_value=len(body) - 1))] + b"\xff\xfe"


async def _check(sinch: SinchSender, body: bytes, *, request_event: bool) -> None:
    response = await sinch.post(body)
    assert response.status_code < 500, (body[:300], response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"]
    elif response.status_code == 200 and request_event:
        assert response.json()["action"] in ("allow", "deny"), response.text


@FUZZ
@given(event=shaped_events())
async def test_any_shape_of_event_is_answered(sinch: SinchSender, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    await _check(sinch, body, request_event=event.get("event") == "VerificationRequestEvent")


@FUZZ
@given(body=raw_bodies())
async def test_any_bytes_are_answered(sinch: SinchSender, body: bytes) -> None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    request_event = isinstance(parsed, dict) and parsed.get("event") == "VerificationRequestEvent"
    await _check(sinch, body, request_event=request_event)


async def test_a_reference_longer_than_its_column_is_decided_and_stored(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    """Sinch allows 4096 characters, the column 1024: a decision, not a fallback."""
    event = {**_valid_request("long-ref"), "reference": "r" * 4096}
    response = await sinch.post(event)
    assert response.status_code == 200
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(VerificationRow).where(VerificationRow.id == "long-ref"))
        ).one()
    assert row.reason != "fallback"
    assert row.reference is not None
    result = {
        "id": "long-ref",
        "event": "VerificationResultEvent",
        "method": "sms",
        "status": "SUCCESSFUL",
        "reference": "s" * 4096,
    }
    assert (await sinch.post(result)).status_code == 200
