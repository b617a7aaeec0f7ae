"""/admin/policy: export as JSON or YAML, import atomically; export -> import is a no-op."""

from __future__ import annotations

from typing import Any

import yaml
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import RuleRevisionRow
from tests.admin.helpers import BLOCKLIST_RULE, count, version

YAML = {"Content-Type": "application/yaml"}


async def _export(client: AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/admin/policy", headers=admin)
    assert response.status_code == 200
    return dict(response.json())


async def test_export_then_import_is_a_no_op(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    entries = {
        "entries": [
            {"value": "+46701234567", "note": "fraud", "expires_at": "2099-01-01T00:00:00Z"}
        ]
    }
    await client.post("/admin/lists/blocklist/entries", json=entries, headers=admin)
    exported = await _export(client, admin)
    before = (await version(engine), await count(engine, RuleRevisionRow))
    response = await client.put("/admin/policy", json=exported, headers=admin)
    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert (await version(engine), await count(engine, RuleRevisionRow)) == before
    assert await _export(client, admin) == exported


async def test_yaml_round_trip_is_a_no_op(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    text = (await client.get("/admin/policy?format=yaml", headers=admin)).text
    assert yaml.safe_load(text) == await _export(client, admin)
    before = await version(engine)
    response = await client.put("/admin/policy", content=text.encode(), headers={**admin, **YAML})
    assert response.json()["changed"] is False and await version(engine) == before


async def test_import_changes_only_what_differs(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    document = await _export(client, admin)
    document["rules"] = [r for r in document["rules"] if r["name"] != "price-ceiling"]
    document["rules"][0]["description"] = "edited"
    document["rules"].append(BLOCKLIST_RULE)
    before = await version(engine)
    response = await client.put("/admin/policy", json=document, headers=admin)
    result = response.json()
    assert (result["created"], result["updated"], result["deleted"]) == (
        ["sweden-block"],
        [document["rules"][0]["name"]],
        ["price-ceiling"],
    )
    assert result["version"] == before + 1 == await version(engine)
    rules = {r["name"]: r for r in (await client.get("/admin/rules", headers=admin)).json()}
    assert rules["blocked-number-types"]["revision"] == 1, "unchanged rules keep their revision"
    assert rules[document["rules"][0]["name"]]["revision"] == 2
    assert "price-ceiling" not in rules


async def test_dry_run_reports_without_changing(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    document = {**(await _export(client, admin)), "default_action": "deny"}
    before = await version(engine)
    response = await client.put("/admin/policy?dry_run=true", json=document, headers=admin)
    assert response.json()["default_action_changed"] is True and response.json()["dry_run"]
    assert await version(engine) == before
    assert (await _export(client, admin))["default_action"] == "allow"


async def test_invalid_policy_is_422_and_changes_nothing(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    before = (await _export(client, admin), await version(engine))
    document = {
        "rules": [
            BLOCKLIST_RULE,
            {**BLOCKLIST_RULE, "name": "two", "when": {"velocity": {"key": "number", "max": 1}}},
        ]
    }
    response = await client.put("/admin/policy", json=document, headers=admin)
    assert response.status_code == 422
    loc = response.json()["errors"][0]["loc"]
    assert loc.startswith("rules.1.when.velocity") and loc.endswith(".window")
    assert (await _export(client, admin), await version(engine)) == before


async def test_unknown_list_and_duplicates_are_422(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    unknown = {"rules": [{**BLOCKLIST_RULE, "when": {"in_list": "ghost"}}]}
    response = await client.put("/admin/policy", json=unknown, headers=admin)
    assert response.status_code == 422 and "ghost" in response.json()["detail"]
    twice = {"lists": [{"name": "l", "kind": "number", "entries": [{"value": "+46701234567"}] * 2}]}
    response = await client.put("/admin/policy", json=twice, headers=admin)
    assert response.json()["errors"] == [
        {"loc": "lists.0.entries.1.value", "msg": "duplicate value"}
    ]


async def test_malformed_bodies(client: AsyncClient, admin: dict[str, str]) -> None:
    bad_yaml = await client.put("/admin/policy", content=b"rules: [", headers={**admin, **YAML})
    assert bad_yaml.status_code == 400 and bad_yaml.json()["code"] == "malformed_document"
    listed = await client.put("/admin/policy", json=[1, 2], headers=admin)
    assert listed.status_code == 422
    xml = await client.put(
        "/admin/policy", content=b"<policy/>", headers={**admin, "Content-Type": "text/xml"}
    )
    assert xml.status_code == 415
