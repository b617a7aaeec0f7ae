"""The callback endpoint through the real HTTP stack, with real signatures, on every backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.callback_io import MAX_CALLBACK_BYTES
from app.sinch import samples
from app.store.models import CallbackRow, VerificationRow
from tests.support import SinchSender

MOBILE_SE = "+46701234567"
PREMIUM_GB = "+449090000123"


async def _count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(table)
        for clause in where:
            stmt = stmt.where(clause)
        return int((await conn.execute(stmt)).scalar_one())


async def _verification(engine: AsyncEngine, ident: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(VerificationRow.__table__).where(VerificationRow.id == ident)
                )
            )
            .mappings()
            .one()
        )
        return dict(row)


async def test_request_event_is_allowed_with_sms_defaults(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=MOBILE_SE, reference="signup-42")
    response = await sinch.post(event)
    assert response.status_code == 200
    assert response.json() == {
        "action": "allow",
        "sms": {"codeType": "Numeric", "expiry": "00:05:00"},
    }
    stored = await _verification(engine, event["id"])
    assert stored["action"] == "allow"
    assert stored["country"] == "SE" and stored["number_type"] == "mobile"
    assert stored["reference"] == "signup-42"
    assert stored["price_amount"] == 0.0453 and stored["price_currency"] == "EUR"
    assert stored["answer"] == response.json()
    assert stored["decision"]["trace"], "every decision carries its trace"


async def test_premium_rate_number_is_denied_by_starter_policy(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=PREMIUM_GB)
    response = await sinch.post(event)
    assert response.json() == {"action": "deny"}
    stored = await _verification(engine, event["id"])
    assert stored["reason"] == "number_type_blocked"
    assert stored["rule_name"] and stored["rule_revision"] == 1


async def test_method_object_follows_the_event_method(sinch: SinchSender) -> None:
    cases = {
        "flashCall": "flashCall",
        "flashcall": "flashCall",
        "callout": "callout",
        "whatsapp": "whatsapp",
    }
    # A number of its own each: the starter denies a 4th unverified attempt to one number.
    for index, (method, key) in enumerate(cases.items()):
        number = f"+4670123450{index}"
        response = await sinch.post(samples.request_event(number=number, method=method))
        body = response.json()
        assert body["action"] == "allow"
        if key == "flashCall":
            assert set(body) == {"action"}, "no flash-call defaults configured: no empty object"
        else:
            assert key in body or key == "whatsapp"
    seamless = await sinch.post(samples.request_event(number="+46701234599", method="seamless"))
    assert seamless.json() == {"action": "allow"}


async def test_callout_answer_carries_locale(sinch: SinchSender) -> None:
    response = await sinch.post(samples.request_event(number=MOBILE_SE, method="callout"))
    assert response.json() == {"action": "allow", "callout": {"speech": {"locale": "en-US"}}}


async def test_unsigned_or_badly_signed_callbacks_get_401(
    sinch: SinchSender, client: AsyncClient, engine: AsyncEngine
) -> None:
    body = json.dumps(samples.request_event(number=MOBILE_SE)).encode()
    missing = await client.post(
        sinch.path, content=body, headers={"content-type": "application/json"}
    )
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "missing_authorization"

    bad_key = await sinch.post(body, key="00000000-0000-0000-0000-000000000000")
    assert bad_key.json()["code"] == "unknown_application"

    headers = sinch.headers(body)
    tampered = await client.post(
        sinch.path, content=body.replace(b"+4670", b"+4671"), headers=headers
    )
    assert tampered.status_code == 401 and tampered.json()["code"] == "bad_signature"

    stale = await sinch.post(body, now=datetime.now(UTC) - timedelta(hours=1))
    assert stale.json()["code"] == "stale_timestamp"

    wrong_path = await sinch.post(body, signed_path="/elsewhere")
    assert wrong_path.json()["code"] == "bad_signature"

    assert await _count(engine, VerificationRow.__table__) == 0, "no decision on a bad signature"
    rejected = await _count(engine, CallbackRow.__table__, CallbackRow.http_status == 401)
    assert rejected == 5


async def test_malformed_json_is_400_and_body_kept(sinch: SinchSender, engine: AsyncEngine) -> None:
    response = await sinch.post(b'{"id": "x", "event": ')
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_json"
    async with engine.connect() as conn:
        raw = (await conn.execute(select(CallbackRow.raw_body))).scalar_one()
    assert raw == b'{"id": "x", "event": '


async def test_missing_field_is_400_naming_it(sinch: SinchSender, engine: AsyncEngine) -> None:
    event = samples.request_event(number=MOBILE_SE)
    del event["identity"]
    response = await sinch.post(event)
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "invalid_event"
    assert [e["loc"] for e in problem["errors"]] == ["identity"]
    assert (
        await _count(engine, CallbackRow.__table__, CallbackRow.error_code == "invalid_event") == 1
    )
    assert await _count(engine, VerificationRow.__table__) == 0


async def test_missing_event_field_is_400(sinch: SinchSender) -> None:
    response = await sinch.post({"id": "abc"})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"loc": "event", "msg": "Field required"}]


async def test_unknown_event_is_stored_and_acknowledged(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    response = await sinch.post({"id": "v1", "event": "VerificationSomethingNewEvent", "x": 1})
    assert response.status_code == 200
    stored = await _count(
        engine, CallbackRow.__table__, CallbackRow.event == "VerificationSomethingNewEvent"
    )
    assert stored == 1


async def test_unknown_fields_are_accepted_and_raw_body_kept(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=MOBILE_SE) | {"brandNew": {"nested": True}}
    event["identity"]["verified"] = False
    response = await sinch.post(event)
    assert response.json()["action"] == "allow"
    async with engine.connect() as conn:
        raw = (await conn.execute(select(CallbackRow.raw_body))).scalar_one()
    assert json.loads(raw)["brandNew"] == {"nested": True}


async def test_result_and_delivery_join_their_verification(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=MOBILE_SE)
    ident = event["id"]
    await sinch.post(event)
    delivered = await sinch.post(samples.delivered_event(verification_id=ident, number=MOBILE_SE))
    result = await sinch.post(samples.result_event(verification_id=ident, number=MOBILE_SE))
    assert delivered.status_code == 200 and delivered.content == b""
    assert result.status_code == 200 and result.content == b""
    stored = await _verification(engine, ident)
    assert stored["sms_result"] == "Successful"
    assert stored["status"] == "SUCCESSFUL" and stored["status_source"] == "intercepted"
    assert stored["action"] == "allow"


async def test_result_before_request_still_joins(sinch: SinchSender, engine: AsyncEngine) -> None:
    event = samples.request_event(number=MOBILE_SE)
    ident = event["id"]
    early = samples.result_event(
        verification_id=ident, number=MOBILE_SE, status="FAIL", reason="Expired"
    )
    assert (await sinch.post(early)).status_code == 200
    assert (await sinch.post(event)).json()["action"] == "allow"
    stored = await _verification(engine, ident)
    assert stored["status"] == "FAIL" and stored["status_reason"] == "Expired"
    assert stored["action"] == "allow" and stored["country"] == "SE"


async def test_late_pending_never_overwrites_a_final_status(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=MOBILE_SE)
    await sinch.post(event)
    await sinch.post(samples.result_event(verification_id=event["id"], number=MOBILE_SE))
    await sinch.post(
        samples.result_event(verification_id=event["id"], number=MOBILE_SE, status="PENDING")
    )
    assert (await _verification(engine, event["id"]))["status"] == "SUCCESSFUL"


async def test_duplicate_request_returns_same_answer_and_is_stored_once(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=MOBILE_SE)
    first = await sinch.post(event)
    second = await sinch.post(event)
    assert first.json() == second.json()
    assert (
        await _count(engine, CallbackRow.__table__, CallbackRow.verification_id == event["id"]) == 1
    )


async def test_concurrent_duplicates_are_decided_once(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=MOBILE_SE)
    responses = await asyncio.gather(*(sinch.post(event) for _ in range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert (
        await _count(engine, CallbackRow.__table__, CallbackRow.verification_id == event["id"]) == 1
    )
    assert await _count(engine, VerificationRow.__table__) == 1


async def test_duplicate_result_is_stored_once(sinch: SinchSender, engine: AsyncEngine) -> None:
    event = samples.result_event(verification_id="v-dup", number=MOBILE_SE)
    await asyncio.gather(*(sinch.post(event) for _ in range(4)))
    assert await _count(engine, CallbackRow.__table__, CallbackRow.verification_id == "v-dup") == 1


async def test_an_oversized_body_is_refused_with_413_and_nothing_stored(
    sinch: SinchSender, client: AsyncClient, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=MOBILE_SE)
    event["padding"] = "x" * (MAX_CALLBACK_BYTES + 1)
    body = json.dumps(event).encode()
    declared = await sinch.post(body)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"
    assert declared.json()["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    streamed = await client.post(sinch.path, content=chunks(), headers=sinch.headers(body))
    assert streamed.status_code == 413 and streamed.json()["code"] == "payload_too_large"
    assert await _count(engine, CallbackRow.__table__) == 0

    event["padding"] = "x" * (MAX_CALLBACK_BYTES - len(json.dumps(event)) + len(event["padding"]))
    at_limit = json.dumps(event).encode()
    assert len(at_limit) == MAX_CALLBACK_BYTES
    assert (await sinch.post(at_limit)).status_code == 200


async def test_a_callback_carries_its_request_id(sinch: SinchSender, client: AsyncClient) -> None:
    body = json.dumps(samples.request_event(number=MOBILE_SE)).encode()
    answered = await sinch.post(body)
    assert answered.status_code == 200 and answered.headers["x-request-id"]
    headers = {**sinch.headers(body), "x-request-id": "sinch-trace-1"}
    again = await client.post(sinch.path, content=body, headers=headers)
    assert again.headers["x-request-id"] == "sinch-trace-1"
    refused = await client.post(sinch.path, content=body, headers={"x-request-id": "r-2"})
    assert refused.status_code == 401 and refused.json()["request_id"] == "r-2"


async def test_a_crash_in_the_callback_is_a_logged_500_problem(
    sinch: SinchSender, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort: the intake answers failures itself (fallback, 503), so only a bug
    outside it gets here; it is still problem+json with the request id, not a dropped line."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def broken(_delivery: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runtime.intake, "receive", broken)
    response = await sinch.post(samples.request_event(number=MOBILE_SE))
    assert response.status_code == 500
    problem = response.json()
    assert problem["code"] == "internal_error"
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_other_methods_on_the_callback_path_are_405(
    sinch: SinchSender, client: AsyncClient
) -> None:
    response = await client.get(sinch.path)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


async def test_answers_carry_the_headers_of_a_json_response_and_of_an_empty_one(
    sinch: SinchSender,
) -> None:
    event = samples.request_event(number=MOBILE_SE)
    answered = await sinch.post(event)
    names = [name for name, _ in answered.headers.raw]
    assert names == [b"content-length", b"content-type", b"x-request-id"]
    assert answered.headers["content-type"] == "application/json"
    assert answered.headers["content-length"] == str(len(answered.content))
    assert answered.content == json.dumps(answered.json(), separators=(",", ":")).encode()
    stored = await sinch.post(samples.result_event(verification_id=event["id"], number=MOBILE_SE))
    assert stored.status_code == 200 and stored.content == b""
    assert [name for name, _ in stored.headers.raw] == [b"content-length", b"x-request-id"]
    assert stored.headers["content-length"] == "0"


async def test_of_repeated_headers_the_first_signs_and_the_last_request_id_counts(
    sinch: SinchSender, client: AsyncClient
) -> None:
    body = json.dumps(samples.request_event(number=MOBILE_SE)).encode()
    signed = sinch.headers(body)
    forged = "Application " + signed["authorization"].split(" ", 1)[1].split(":")[0] + ":AAAA"
    ids = [("x-request-id", "first"), ("x-request-id", "last")]
    rest = [(k, v) for k, v in signed.items() if k != "authorization"]
    good_first = [("authorization", signed["authorization"]), ("authorization", forged)]
    answered = await client.post(sinch.path, content=body, headers=good_first + rest + ids)
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "last"
    forged_first = [("authorization", forged), ("authorization", signed["authorization"])]
    refused = await client.post(sinch.path, content=body, headers=forged_first + rest)
    assert refused.status_code == 401 and refused.json()["code"] == "bad_signature"
