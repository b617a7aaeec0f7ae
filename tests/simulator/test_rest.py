"""The Sinch REST emulator against the real app: start → request event → allow or deny →
report → result event, with Sinch-shaped errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from app.simulator.callback import CallbackTarget
from app.simulator.rest import create_emulator
from app.store.models import VerificationRow
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

V1 = "/verification/v1/verifications"
MOBILE, PREMIUM = "+46701234567", "+449098123456"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(client: AsyncClient, settings: Settings, clock: Clock) -> AsyncIterator[AsyncClient]:
    """The emulator, calling the real app through the `client` fixture."""
    target = CallbackTarget.at(
        "http://verifyguard.test",
        path=settings.callback_path,
        signed_path=settings.signed_path,
        key=TEST_APP_KEY,
        secret=TEST_APP_SECRET,
    )
    emulator = create_emulator(target, client=client, clock=clock)
    async with emulator.router.lifespan_context(emulator):
        transport = ASGITransport(app=emulator)
        async with AsyncClient(transport=transport, base_url="http://sinch.test") as http:
            yield http


async def _start(api: AsyncClient, number: str, method: str = "sms", **extra: Any) -> str:
    body = {"identity": {"type": "number", "endpoint": number}, "method": method, **extra}
    response = await api.post(V1, json=body)
    assert response.status_code == 200, response.text
    ident: str = response.json()["id"]
    return ident


async def _status(api: AsyncClient, ident: str) -> dict[str, Any]:
    response = await api.get(f"{V1}/id/{ident}")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def _code(api: AsyncClient, ident: str) -> str:
    code: str = (await api.get(f"/emulator/verifications/{ident}")).json()["code"]
    return code


async def _stored(engine: AsyncEngine, ident: str) -> tuple[str | None, str | None, str | None]:
    table = VerificationRow
    query = select(table.action, table.status, table.sms_result).where(table.id == ident)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one()
    return row[0], row[1], row[2]


async def test_allowed_sms_verification_succeeds_with_the_right_code(
    api: AsyncClient, engine: AsyncEngine
) -> None:
    response = await api.post(
        V1, json={"identity": {"type": "number", "endpoint": MOBILE}, "method": "sms"}
    )
    started = response.json()
    assert set(started) >= {"id", "method", "sms", "_links"}
    ident = started["id"]
    assert (await _status(api, ident))["status"] == "PENDING"
    assert await _stored(engine, ident) == ("allow", None, "Successful")
    report = {"method": "sms", "sms": {"code": await _code(api, ident)}}
    answer = (await api.put(f"{V1}/id/{ident}", json=report)).json()
    assert answer == {"id": ident, "method": "sms", "status": "SUCCESSFUL"}
    status = await _status(api, ident)
    assert (status["status"], status["source"], status["countryId"]) == (
        "SUCCESSFUL",
        "manual",
        "SE",
    )
    assert status["identity"] == {"type": "number", "endpoint": MOBILE}
    assert await _stored(engine, ident) == ("allow", "SUCCESSFUL", "Successful")


async def test_denied_by_the_callback_ends_denied(api: AsyncClient, engine: AsyncEngine) -> None:
    ident = await _start(api, PREMIUM)
    status = await _status(api, ident)
    assert (status["status"], status["reason"]) == ("DENIED", "Denied by callback")
    assert await _stored(engine, ident) == ("deny", "DENIED", None)


async def test_wrong_code_fails(api: AsyncClient, engine: AsyncEngine) -> None:
    ident = await _start(api, MOBILE)
    wrong = "x" + await _code(api, ident)
    answer = await api.put(f"{V1}/number/{MOBILE}", json={"method": "sms", "sms": {"code": wrong}})
    assert answer.json()["status"] == "FAIL"
    assert answer.json()["reason"] == "Invalid code"
    assert (await _stored(engine, ident))[1] == "FAIL"


async def test_late_code_expires(api: AsyncClient, clock: Clock) -> None:
    ident = await _start(api, MOBILE)
    clock.now += timedelta(minutes=6)  # the starter answer sets expiry 00:05:00
    report = {"method": "sms", "sms": {"code": await _code(api, ident)}}
    answer = (await api.put(f"{V1}/id/{ident}", json=report)).json()
    assert (answer["status"], answer["reason"]) == ("FAIL", "Expired")


async def test_new_start_aborts_the_pending_one(api: AsyncClient, engine: AsyncEngine) -> None:
    first = await _start(api, MOBILE, reference="signup-1")
    second = await _start(api, MOBILE, reference="signup-2")
    assert (await _status(api, first))["status"] == "ABORTED"
    assert (await _stored(engine, first))[1] == "ABORTED"
    by_ref = (await api.get(f"{V1}/reference/signup-2")).json()
    assert by_ref["id"] == second
    by_number = (await api.get(f"{V1}/sms/number/{MOBILE}")).json()
    assert by_number["id"] == second


async def test_flash_call_is_verified_by_its_cli(api: AsyncClient) -> None:
    ident = await _start(api, MOBILE, method="flashcall")
    cli = (await api.get(f"/emulator/verifications/{ident}")).json()["cli"]
    report = {"method": "flashcall", "flashCall": {"cli": cli}}
    answer = (await api.put(f"{V1}/id/{ident}", json=report)).json()
    assert answer["status"] == "SUCCESSFUL"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", f"{V1}/id/nope", None, 404, 40400),
        ("PUT", f"{V1}/id/nope", {"method": "sms", "sms": {"code": "1"}}, 404, 40400),
        (
            "POST",
            V1,
            {"identity": {"type": "number", "endpoint": "0701"}, "method": "sms"},
            400,
            40001,
        ),
        (
            "POST",
            V1,
            {"identity": {"type": "number", "endpoint": MOBILE}, "method": "fax"},
            400,
            40001,
        ),
        ("POST", V1, None, 400, 40001),
        ("GET", "/verification/v1/nothing", None, 404, 40400),
    ],
)
async def test_errors_are_shaped_like_sinch(
    api: AsyncClient, method: str, path: str, body: Any, status: int, code: int
) -> None:
    response = await api.request(method, path, json=body)
    assert response.status_code == status
    document = response.json()
    assert document["errorCode"] == code
    assert document["message"]
