"""Sinch-shaped look-ups by id, reference and method + number; auth, masking and 404s."""

from __future__ import annotations

from pathlib import Path

from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.sinch import samples
from tests.audit.rows import BASE, audit_log, auditor_token, insert_rows, minutes, row
from tests.conftest import make_settings
from tests.support import SinchSender

NUMBER = "+46701234233"


async def test_lookup_by_id_is_sinch_shaped_with_our_decision(
    sinch: SinchSender, client: AsyncClient, admin: dict[str, str]
) -> None:
    event = samples.request_event(number=NUMBER, reference="signup-7")
    assert (await sinch.post(event)).status_code == 200
    result = samples.result_event(verification_id=event["id"], number=NUMBER, status="SUCCESSFUL")
    assert (await sinch.post(result)).status_code == 200

    response = await client.get(f"/audit/verifications/id/{event['id']}", headers=admin)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == event["id"] and body["method"] == "sms"
    assert body["status"] == "SUCCESSFUL" and body["source"] == "intercepted"
    assert body["identity"] == {"type": "number", "endpoint": NUMBER}
    assert body["countryId"] == "SE" and body["reference"] == "signup-7"
    assert body["price"] == {"verificationPrice": {"currencyId": "EUR", "amount": 0.0453}}
    assert body["decision"]["action"] == "allow"
    assert body["decision"]["decidedBy"] in ("default", "enforce")


async def test_auditor_sees_masked_numbers_admin_whole(
    engine: AsyncEngine, client: AsyncClient, admin: dict[str, str], auditor: dict[str, str]
) -> None:
    [ident] = await insert_rows(engine, [row(custom=f"user called from {NUMBER}")])
    path = f"/audit/verifications/id/{ident}"

    as_auditor = (await client.get(path, headers=auditor)).json()
    as_admin = (await client.get(path, headers=admin)).json()

    assert as_auditor["identity"]["endpoint"] == "+4670****233"
    assert as_auditor["custom"] == "user called from +4670****233"
    assert as_admin["identity"]["endpoint"] == NUMBER
    assert as_admin["custom"] == f"user called from {NUMBER}"


async def test_masking_can_be_switched_off_for_auditors(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, mask_numbers_for_auditors=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = app.state.runtime.engine
        [ident] = await insert_rows(engine, [row()])
        headers = {"Authorization": f"Bearer {await auditor_token(engine)}"}
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            body = (await http.get(f"/audit/verifications/id/{ident}", headers=headers)).json()
    assert body["identity"]["endpoint"] == NUMBER


async def test_lookup_by_reference_returns_the_newest(
    engine: AsyncEngine, client: AsyncClient, admin: dict[str, str]
) -> None:
    old, new = await insert_rows(
        engine,
        [
            row(reference="order/9", requested_at=BASE),
            row(reference="order/9", requested_at=BASE + minutes(5)),
        ],
    )
    response = await client.get("/audit/verifications/reference/order/9", headers=admin)
    assert response.status_code == 200
    assert response.json()["id"] == new != old


async def test_lookup_by_method_and_number_returns_the_newest_of_that_method(
    engine: AsyncEngine, client: AsyncClient, admin: dict[str, str]
) -> None:
    sms, _call, _other = await insert_rows(
        engine,
        [
            row(requested_at=BASE),
            row(method="callout", requested_at=BASE + minutes(9)),
            row(number="+46701234999", requested_at=BASE + minutes(10)),
        ],
    )
    response = await client.get(f"/audit/verifications/sms/number/{NUMBER}", headers=admin)
    assert response.json()["id"] == sms
    upper = await client.get(f"/audit/verifications/SMS/number/{NUMBER[1:]}", headers=admin)
    assert upper.json()["id"] == sms


async def test_unknown_verification_is_404_problem_and_logged(
    client: AsyncClient, engine: AsyncEngine, auditor: dict[str, str]
) -> None:
    paths = [
        "/audit/verifications/id/nope",
        "/audit/verifications/reference/nope",
        "/audit/verifications/sms/number/+4670000000",
        "/audit/verifications/nope/timeline",
    ]
    for path in paths:
        response = await client.get(path, headers=auditor)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "verification_not_found"
    logged = await audit_log(engine)
    assert [entry["path"] for entry in logged] == paths
    assert {entry["status"] for entry in logged} == {404}
    assert {entry["token_name"] for entry in logged} == {"alice"}


async def test_audit_needs_a_valid_token(client: AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        response = await client.get("/audit/verifications", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/audit/stats")).status_code == 401
    assert (await client.get("/audit/export")).status_code == 401


async def test_every_lookup_is_logged_with_the_token_that_asked(
    engine: AsyncEngine, client: AsyncClient, auditor: dict[str, str], admin: dict[str, str]
) -> None:
    [ident] = await insert_rows(engine, [row()])
    await client.get(f"/audit/verifications/id/{ident}", headers=auditor)
    await client.get("/audit/verifications", params={"country": "SE"}, headers=admin)
    first, second = await audit_log(engine)
    assert (first["token_name"], first["role"], first["status"]) == ("alice", "auditor", 200)
    assert first["token_id"] is not None and first["path"].endswith(ident)
    assert (second["token_name"], second["role"]) == ("bootstrap", "admin")
    assert second["query"] == {"country": "SE"}
