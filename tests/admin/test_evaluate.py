"""/admin/evaluate is a dry run on live aggregates; policy changes reach the next callback."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.sinch import samples
from app.store.models import CallbackRow, CounterRow, VerificationMatchRow, VerificationRow
from tests.admin.conftest import BOOTSTRAP
from tests.admin.helpers import BLOCKLIST_RULE, count, rows
from tests.conftest import make_settings
from tests.support import SinchSender

NUMBER = "+46701234567"
NUMBER_VELOCITY = "attempts:number:3600"
STORED = (CallbackRow, VerificationRow, VerificationMatchRow)


async def _evaluate(client: AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    body.setdefault("event", samples.request_event(number=NUMBER))
    response = await client.post("/admin/evaluate", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_evaluate_explains_the_decision(client: AsyncClient, admin: dict[str, str]) -> None:
    event = samples.request_event(number="+449090000123", method="callout")
    result = await _evaluate(client, admin, event=event)
    assert (result["action"], result["reason"], result["rule"]) == (
        "deny",
        "number_type_blocked",
        "blocked-number-types",
    )
    assert result["rule_revision"] == 1 and result["mode"] == "enforce"
    assert result["answer"] == {"action": "deny"}
    assert result["facts"]["number_type"] == "premium_rate"
    decided = next(t for t in result["trace"] if t["rule"] == "blocked-number-types")
    assert decided["matched"] and "premium_rate" in decided["conditions"][0]["text"]
    allowed = await _evaluate(client, admin)
    assert allowed["answer"]["sms"]["codeType"] == "Numeric"


async def test_evaluate_counts_nothing_and_stores_nothing(
    client: AsyncClient, admin: dict[str, str], sinch: SinchSender, engine: AsyncEngine
) -> None:
    assert (await sinch.post(samples.request_event(number=NUMBER))).status_code == 200
    before = [await count(engine, table) for table in STORED]
    counters = await rows(engine, CounterRow.__table__)
    for _ in range(3):
        result = await _evaluate(client, admin)
        assert result["aggregates"][NUMBER_VELOCITY] == 2, "one stored attempt plus this one"
    assert [await count(engine, table) for table in STORED] == before
    assert await rows(engine, CounterRow.__table__) == counters
    await sinch.post(samples.request_event(number=NUMBER))
    assert (await _evaluate(client, admin))["aggregates"][NUMBER_VELOCITY] == 3


async def test_velocity_limit_shows_before_the_request_hits_it(
    client: AsyncClient, admin: dict[str, str], sinch: SinchSender
) -> None:
    for _ in range(3):  # the starter allows 3 unverified attempts per number and hour
        response = await sinch.post(samples.request_event(number=NUMBER))
        assert response.json()["action"] == "allow"
    result = await _evaluate(client, admin)
    assert (result["action"], result["reason"]) == ("deny", "number_velocity")
    real = await sinch.post(samples.request_event(number=NUMBER))
    assert real.json() == {"action": "deny"}, "evaluate predicted the real answer"


async def test_candidate_policy_is_evaluated_instead_of_the_live_one(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    candidate = {"rules": [BLOCKLIST_RULE], "default_action": "allow"}
    result = await _evaluate(client, admin, policy=candidate)
    assert (result["action"], result["rule"], result["candidate"]) == ("deny", "sweden-block", True)
    assert result["policy_version"] == "candidate"
    assert (await _evaluate(client, admin))["action"] == "allow", "the live policy is unchanged"


async def test_invalid_event_or_candidate_is_422_naming_the_field(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    event = samples.request_event(number=NUMBER)
    del event["identity"]
    response = await client.post("/admin/evaluate", json={"event": event}, headers=admin)
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == "event.identity"
    bad = {"rules": [{**BLOCKLIST_RULE, "action": "maybe"}]}
    body = {"event": samples.request_event(number=NUMBER), "policy": bad}
    response = await client.post("/admin/evaluate", json=body, headers=admin)
    assert response.json()["errors"][0]["loc"] == "policy.rules.0.action"


async def test_rule_change_is_used_by_the_very_next_request(
    client: AsyncClient, admin: dict[str, str], sinch: SinchSender
) -> None:
    assert (await sinch.post(samples.request_event(number=NUMBER))).json()["action"] == "allow"
    created = await client.post("/admin/rules", json=BLOCKLIST_RULE, headers=admin)
    assert (await sinch.post(samples.request_event(number=NUMBER))).json() == {"action": "deny"}
    url = f"/admin/rules/{created.json()['id']}"
    await client.patch(url, json={"mode": "shadow"}, headers=admin)
    assert (await sinch.post(samples.request_event(number=NUMBER))).json()["action"] == "allow"
    await client.put("/admin/policy", json={"rules": [], "lists": []}, headers=admin)
    premium = samples.request_event(number="+449090000123")
    assert (await sinch.post(premium)).json()["action"] == "allow", "no rules left"


async def test_list_change_is_used_by_the_very_next_request(
    client: AsyncClient, admin: dict[str, str], sinch: SinchSender
) -> None:
    body = {"entries": [{"value": NUMBER, "note": "reported"}]}
    await client.post("/admin/lists/blocklist/entries", json=body, headers=admin)
    assert (await sinch.post(samples.request_event(number=NUMBER))).json() == {"action": "deny"}
    await client.request(
        "DELETE", "/admin/lists/blocklist/entries", json={"values": [NUMBER]}, headers=admin
    )
    assert (await sinch.post(samples.request_event(number=NUMBER))).json()["action"] == "allow"


@pytest.mark.redis
async def test_evaluate_reads_redis_counters_without_counting(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    settings = make_settings(database_url, tmp_path, bootstrap_token=BOOTSTRAP, redis_url=redis_url)
    number = f"+4670{random.randrange(10**6, 10**7)}"  # fresh Redis keys for this run
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            sinch = SinchSender(http, path=settings.callback_path)
            headers = {"Authorization": f"Bearer {BOOTSTRAP}"}
            event = samples.request_event(number=number)
            for _ in range(2):
                await sinch.post(samples.request_event(number=number))
            seen = [await _evaluate(http, headers, event=event) for _ in range(3)]
            assert [s["aggregates"][NUMBER_VELOCITY] for s in seen] == [3, 3, 3]
            await sinch.post(samples.request_event(number=number))
            again = await _evaluate(http, headers, event=event)
            assert again["aggregates"][NUMBER_VELOCITY] == 4
