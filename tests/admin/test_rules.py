"""/admin/rules: CRUD with field-naming 422s, revisions with authors, restore."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.admin.helpers import BLOCKLIST_RULE, version


async def _create(client: AsyncClient, admin: dict[str, str], **over: Any) -> dict[str, Any]:
    response = await client.post("/admin/rules", json={**BLOCKLIST_RULE, **over}, headers=admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_create_read_list_rule(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    before = await version(engine)
    created = await _create(client, admin)
    assert created["revision"] == 1 and created["updated_by"] == "alice"
    assert await version(engine) == before + 1
    read = await client.get(f"/admin/rules/{created['id']}", headers=admin)
    assert read.json() == created
    names = [rule["name"] for rule in (await client.get("/admin/rules", headers=admin)).json()]
    assert names.index("sweden-block") < names.index("invalid-number"), "priority order"


async def test_invalid_rule_is_422_naming_the_field(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    bad = {**BLOCKLIST_RULE, "when": {"velocity": {"key": "range", "window": "1h", "max": 5}}}
    response = await client.post("/admin/rules", json=bad, headers=admin)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert any(e["loc"].startswith("when.velocity") for e in body["errors"]), body
    assert "digits" in body["detail"]


async def test_bad_reason_and_unknown_field_are_named(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    bad = {**BLOCKLIST_RULE, "reason": "Not A Code", "colour": "red"}
    response = await client.post("/admin/rules", json=bad, headers=admin)
    locs = {e["loc"] for e in response.json()["errors"]}
    assert response.status_code == 422 and {"reason", "colour"} <= locs


async def test_unknown_list_is_422_at_its_place(client: AsyncClient, admin: dict[str, str]) -> None:
    when = {"any": [{"field": "country", "op": "eq", "value": "SE"}, {"in_list": "nope"}]}
    response = await client.post(
        "/admin/rules", json={**BLOCKLIST_RULE, "when": when}, headers=admin
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"loc": "when.any.1.in_list", "msg": "unknown list 'nope'"}
    ]


async def test_duplicate_name_is_409(client: AsyncClient, admin: dict[str, str]) -> None:
    response = await client.post(
        "/admin/rules", json={**BLOCKLIST_RULE, "name": "blocklist"}, headers=admin
    )
    assert response.status_code == 409
    assert response.json()["errors"][0]["loc"] == "name"


async def test_update_makes_a_revision_with_before_and_after(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    rule = await _create(client, admin)
    changed = {**BLOCKLIST_RULE, "when": {"field": "country", "op": "in", "value": ["SE", "NO"]}}
    response = await client.put(f"/admin/rules/{rule['id']}", json=changed, headers=admin)
    assert response.status_code == 200 and response.json()["revision"] == 2
    revisions = (await client.get(f"/admin/rules/{rule['id']}/revisions", headers=admin)).json()
    assert [r["revision"] for r in revisions] == [2, 1]
    latest = revisions[0]
    assert latest["change"] == "updated" and latest["actor"] == "alice"
    assert latest["token_id"] is not None
    assert latest["before"]["when"]["op"] == "eq" and latest["after"]["when"]["op"] == "in"


async def test_put_same_document_changes_nothing(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    rule = await _create(client, admin)
    before = await version(engine)
    response = await client.put(f"/admin/rules/{rule['id']}", json=BLOCKLIST_RULE, headers=admin)
    assert response.json()["revision"] == 1
    assert await version(engine) == before


async def test_put_with_stale_revision_is_409(client: AsyncClient, admin: dict[str, str]) -> None:
    rule = await _create(client, admin)
    stale = {**BLOCKLIST_RULE, "description": "x", "revision": 7}
    response = await client.put(f"/admin/rules/{rule['id']}", json=stale, headers=admin)
    assert response.status_code == 409
    assert response.json()["code"] == "revision_mismatch"


async def test_patch_mode_and_priority(client: AsyncClient, admin: dict[str, str]) -> None:
    rule = await _create(client, admin)
    url = f"/admin/rules/{rule['id']}"
    off = await client.patch(url, json={"mode": "off"}, headers=admin)
    assert off.json()["mode"] == "off" and off.json()["revision"] == 2
    moved = await client.patch(url, json={"priority": 99, "mode": "shadow"}, headers=admin)
    assert (moved.json()["priority"], moved.json()["mode"]) == (99, "shadow")
    empty = await client.patch(url, json={}, headers=admin)
    assert empty.status_code == 422
    wrong = await client.patch(url, json={"mode": "loud"}, headers=admin)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["loc"] == "mode"


async def test_unknown_rule_is_404(client: AsyncClient, admin: dict[str, str]) -> None:
    assert (await client.get("/admin/rules/999", headers=admin)).status_code == 404
    assert (await client.delete("/admin/rules/999", headers=admin)).status_code == 404
    assert (await client.get("/admin/rules/999/revisions", headers=admin)).status_code == 404


async def test_restore_makes_a_new_revision_equal_to_the_old(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    rule = await _create(client, admin)
    url = f"/admin/rules/{rule['id']}"
    await client.put(url, json={**BLOCKLIST_RULE, "action": "allow"}, headers=admin)
    restored = await client.post(f"{url}/revisions/1/restore", headers=admin)
    assert restored.status_code == 200
    assert restored.json()["revision"] == 3 and restored.json()["action"] == "deny"
    revisions = (await client.get(f"{url}/revisions", headers=admin)).json()
    assert revisions[0]["change"] == "restored"
    assert revisions[0]["after"] == revisions[-1]["after"]
    missing = await client.post(f"{url}/revisions/9/restore", headers=admin)
    assert missing.status_code == 404


async def test_deleted_rule_keeps_history_and_can_be_restored(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    rule = await _create(client, admin)
    url = f"/admin/rules/{rule['id']}"
    assert (await client.delete(url, headers=admin)).status_code == 204
    assert (await client.get(url, headers=admin)).status_code == 404
    revisions = (await client.get(f"{url}/revisions", headers=admin)).json()
    assert [r["change"] for r in revisions] == ["deleted", "created"]
    deletion = await client.post(f"{url}/revisions/2/restore", headers=admin)
    assert deletion.status_code == 422
    back = await client.post(f"{url}/revisions/1/restore", headers=admin)
    assert back.status_code == 200
    assert back.json()["id"] == rule["id"] and back.json()["revision"] == 3
    assert (await client.get(url, headers=admin)).json()["name"] == "sweden-block"


async def test_a_rule_created_after_the_newest_was_deleted_gets_a_fresh_id(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    """Ids are never reused (SQLite would reuse the largest rowid once its row is gone):
    the deleted rule's history stays its own and the new rule starts at revision 1."""
    first = await _create(client, admin)
    assert (await client.delete(f"/admin/rules/{first['id']}", headers=admin)).status_code == 204
    second = await _create(client, admin, name="sweden-block-2")
    assert second["id"] != first["id"] and second["revision"] == 1
    history = (await client.get(f"/admin/rules/{first['id']}/revisions", headers=admin)).json()
    assert [r["change"] for r in history] == ["deleted", "created"]
    mine = (await client.get(f"/admin/rules/{second['id']}/revisions", headers=admin)).json()
    assert [(r["change"], r["rule_name"]) for r in mine] == [("created", "sweden-block-2")]
