"""A verification's timeline through the real callback path: request, decision, receipts, results."""

from __future__ import annotations

from httpx import AsyncClient

from app.sinch import samples
from tests.support import SinchSender

NUMBER = "+46701234233"
PREMIUM = "+449090000123"


async def test_timeline_joins_request_decision_receipt_and_results(
    sinch: SinchSender, client: AsyncClient, admin: dict[str, str]
) -> None:
    event = samples.request_event(number=NUMBER, reference="signup-1")
    ident = event["id"]
    await sinch.post(event)
    await sinch.post(samples.delivered_event(verification_id=ident, number=NUMBER))
    await sinch.post(samples.result_event(verification_id=ident, number=NUMBER, status="PENDING"))
    await sinch.post(samples.result_event(verification_id=ident, number=NUMBER))

    response = await client.get(f"/audit/verifications/{ident}/timeline", headers=admin)

    assert response.status_code == 200
    body = response.json()
    assert body["verification"]["status"] == "SUCCESSFUL"
    kinds = [e["kind"] for e in body["events"]]
    assert kinds == ["request", "decision", "sms_delivered", "result", "result"]
    request, decision = body["events"][0], body["events"][1]
    assert request["body"] == event and request["signature"] == "valid"
    assert decision["action"] == "allow" and decision["trace"]
    assert decision["answer"]["action"] == "allow"
    assert body["events"][2]["body"]["smsResult"] == "Successful"
    assert [e["body"]["status"] for e in body["events"][3:]] == ["PENDING", "SUCCESSFUL"]


async def test_timeline_of_a_denied_request_names_the_rule_revision(
    sinch: SinchSender, client: AsyncClient, admin: dict[str, str]
) -> None:
    event = samples.request_event(number=PREMIUM)
    assert (await sinch.post(event)).json() == {"action": "deny"}

    body = (await client.get(f"/audit/verifications/{event['id']}/timeline", headers=admin)).json()

    decision = next(e for e in body["events"] if e["kind"] == "decision")
    assert decision["reason"] == "number_type_blocked"
    assert decision["rule"] and decision["ruleRevision"] == 1
    held = [c for entry in decision["trace"] if entry["matched"] for c in entry["conditions"]]
    assert held, "the trace says which condition held"
    assert decision["facts"]["number_type"] == "premium_rate"


async def test_timeline_masks_numbers_in_raw_bodies_for_auditors(
    sinch: SinchSender, client: AsyncClient, auditor: dict[str, str]
) -> None:
    event = samples.request_event(number=NUMBER)
    await sinch.post(event)

    response = await client.get(f"/audit/verifications/{event['id']}/timeline", headers=auditor)

    assert NUMBER not in response.text
    request = response.json()["events"][0]
    assert request["body"]["identity"]["endpoint"] == "+4670****233"


async def test_openapi_documents_the_timeline_events_by_kind(client: AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    items = schemas["Timeline"]["properties"]["events"]["items"]
    assert items["discriminator"]["propertyName"] == "kind"
    assert set(items["discriminator"]["mapping"]) == {
        "request",
        "result",
        "sms_delivered",
        "other",
        "decision",
    }
    assert "ruleDefinition" in schemas["DecisionEventRead"]["properties"]
    assert "rawText" in schemas["CallbackEventRead"]["properties"]
