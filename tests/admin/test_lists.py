"""/admin/lists: create, bulk add and remove with expiry and note, CSV import, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sinch import samples
from tests.admin.helpers import version

NUMBER = "+46701234567"
RANGE_RULE = {
    "name": "pumped-ranges",
    "priority": 2,
    "action": "deny",
    "reason": "range_blocked",
    "when": {"in_list": "pumped"},
}


async def _list(client: AsyncClient, admin: dict[str, str], name: str) -> dict[str, Any]:
    response = await client.get(f"/admin/lists/{name}", headers=admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _decide(client: AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    event = samples.request_event(number=NUMBER)
    response = await client.post("/admin/evaluate", json={"event": event, **body}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_create_list_and_add_entries_in_bulk(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    created = await client.post(
        "/admin/lists", json={"name": "pumped", "kind": "prefix"}, headers=admin
    )
    assert created.status_code == 201 and created.json()["entries"] == []
    before = await version(engine)
    body = {
        "entries": [{"value": "+4670 12"}, {"value": "+4479", "note": "own note"}],
        "note": "incident 42",
    }
    added = await client.post("/admin/lists/pumped/entries", json=body, headers=admin)
    assert added.json() == {"added": 2, "updated": 0}
    assert await version(engine) == before + 1
    entries = {e["value"]: e for e in (await _list(client, admin, "pumped"))["entries"]}
    assert entries["+467012"]["note"] == "incident 42"
    assert entries["+4479"]["note"] == "own note" and entries["+4479"]["created_by"] == "alice"
    again = await client.post("/admin/lists/pumped/entries", json=body, headers=admin)
    assert again.json() == {"added": 0, "updated": 2}
    summary = (await client.get("/admin/lists", headers=admin)).json()
    assert {"name": "pumped", "entries": 2, "active_entries": 2}.items() <= next(
        s for s in summary if s["name"] == "pumped"
    ).items()


async def test_number_list_rejects_prefix_naming_the_entry(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    body = {"entries": [{"value": NUMBER}, {"value": "+0470"}]}
    response = await client.post("/admin/lists/blocklist/entries", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "entries.1.value"
    assert (await _list(client, admin, "blocklist"))["entries"] == [], "nothing added"


async def test_duplicate_list_is_409_and_bad_name_is_422(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    dup = await client.post(
        "/admin/lists", json={"name": "blocklist", "kind": "number"}, headers=admin
    )
    assert dup.status_code == 409
    bad = await client.post("/admin/lists", json={"name": "Bad Name", "kind": "set"}, headers=admin)
    assert bad.status_code == 422
    assert {e["loc"] for e in bad.json()["errors"]} == {"name", "kind"}


async def test_remove_entries_in_bulk(client: AsyncClient, admin: dict[str, str]) -> None:
    body = {"entries": [{"value": NUMBER}, {"value": "+46701234568"}]}
    await client.post("/admin/lists/blocklist/entries", json=body, headers=admin)
    removed = await client.request(
        "DELETE",
        "/admin/lists/blocklist/entries",
        json={"values": ["+46 70 123 45 67", "+46709999999"]},
        headers=admin,
    )
    assert removed.json() == {"removed": 1}
    values = [e["value"] for e in (await _list(client, admin, "blocklist"))["entries"]]
    assert values == ["+46701234568"]


async def test_blocklisted_number_is_denied_until_its_entry_expires(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    expires = now + timedelta(hours=1)
    body = {"entries": [{"value": NUMBER}], "expires_at": expires.isoformat()}
    await client.post("/admin/lists/blocklist/entries", json=body, headers=admin)
    assert (await _decide(client, admin))["reason"] == "blocklisted"
    later = (now + timedelta(hours=2)).isoformat()
    decision = await _decide(client, admin, at=later)
    assert decision["action"] == "allow" and decision["reason"] == "default"
    listed = await _list(client, admin, "blocklist")
    assert listed["entries"][0]["active"] is True


async def test_already_expired_entry_does_not_match(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    body = {"entries": [{"value": NUMBER, "expires_at": past}]}
    await client.post("/admin/lists/blocklist/entries", json=body, headers=admin)
    assert (await _decide(client, admin))["action"] == "allow"
    listed = await _list(client, admin, "blocklist")
    assert listed["entries"][0]["active"] is False
    summary = (await client.get("/admin/lists", headers=admin)).json()
    blocklist = next(s for s in summary if s["name"] == "blocklist")
    assert (blocklist["entries"], blocklist["active_entries"]) == (1, 0)


async def test_csv_import_as_text_and_as_multipart(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    await client.post("/admin/lists", json={"name": "pumped", "kind": "prefix"}, headers=admin)
    text = "value,note,expires_at\n+4670123,walked range,2099-01-01\n\n+44 79,,\n"
    response = await client.post(
        "/admin/lists/pumped/import",
        content=text.encode(),
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert response.json() == {"added": 2, "updated": 0}
    files = {"file": ("more.csv", b"+4479,now with a note\n+3161,\n", "text/csv")}
    response = await client.post("/admin/lists/pumped/import", files=files, headers=admin)
    assert response.json() == {"added": 1, "updated": 1}
    entries = {e["value"]: e for e in (await _list(client, admin, "pumped"))["entries"]}
    assert entries["+4670123"]["expires_at"].startswith("2099-01-01T00:00:00")
    assert entries["+4479"]["note"] == "now with a note"
    assert set(entries) == {"+4670123", "+4479", "+3161"}


async def test_csv_errors_name_line_and_column(client: AsyncClient, admin: dict[str, str]) -> None:
    text = f"{NUMBER},ok,\nnot-a-number,x,\n{NUMBER},y,tomorrow\n"
    response = await client.post(
        "/admin/lists/blocklist/import",
        content=text.encode(),
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["errors"]]
    assert locs == ["line 2.value", "line 3.expires_at"]
    assert (await _list(client, admin, "blocklist"))["entries"] == []


async def test_list_used_by_a_rule_cannot_be_deleted(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    await client.post("/admin/lists", json={"name": "pumped", "kind": "prefix"}, headers=admin)
    await client.post("/admin/rules", json=RANGE_RULE, headers=admin)
    in_use = await client.delete("/admin/lists/pumped", headers=admin)
    assert in_use.status_code == 409 and "pumped-ranges" in in_use.json()["detail"]
    rules = (await client.get("/admin/rules", headers=admin)).json()
    rule_id = next(r["id"] for r in rules if r["name"] == "pumped-ranges")
    assert (await client.delete(f"/admin/rules/{rule_id}", headers=admin)).status_code == 204
    assert (await client.delete("/admin/lists/pumped", headers=admin)).status_code == 204
    assert (await client.get("/admin/lists/pumped", headers=admin)).status_code == 404


async def test_prefix_list_rule_matches_through_evaluate(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    await client.post("/admin/lists", json={"name": "pumped", "kind": "prefix"}, headers=admin)
    await client.post("/admin/rules", json=RANGE_RULE, headers=admin)
    assert (await _decide(client, admin))["action"] == "allow"
    body = {"entries": [{"value": "+467012"}]}
    await client.post("/admin/lists/pumped/entries", json=body, headers=admin)
    decision = await _decide(client, admin)
    assert (decision["action"], decision["rule"]) == ("deny", "pumped-ranges")
    entry = next(t for t in decision["trace"] if t["rule"] == "pumped-ranges")
    assert "entry +467012" in entry["conditions"][0]["text"]
