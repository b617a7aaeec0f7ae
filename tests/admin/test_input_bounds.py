"""Input the database cannot hold is refused at the door, quickly, on every backend: ids
beyond its 32-bit integers, NUL characters (PostgreSQL stores none), forged cursors."""

from __future__ import annotations

import base64
import json

from httpx import AsyncClient

BEYOND = 2**31  # one past PostgreSQL's integer
HUGE = 10**30


def _problem(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_ids_beyond_the_database_integer_are_422(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    for rule_id in (BEYOND, HUGE, -HUGE, 0):
        for method, path in (
            ("GET", f"/admin/rules/{rule_id}"),
            ("DELETE", f"/admin/rules/{rule_id}"),
            ("GET", f"/admin/rules/{rule_id}/revisions"),
            ("POST", f"/admin/rules/{rule_id}/revisions/1/restore"),
            ("POST", f"/admin/rules/1/revisions/{rule_id}/restore"),
        ):
            response = await client.request(method, path, headers=admin)
            _problem(response, 422, "validation_error")
    assert (await client.get(f"/admin/rules/{BEYOND - 1}", headers=admin)).status_code == 404


async def test_numbers_in_bodies_beyond_the_database_integer_are_422(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    rule = {
        "name": "big",
        "action": "deny",
        "reason": "too_big",
        "priority": BEYOND,
        "when": {"field": "country", "op": "eq", "value": "SE"},
    }
    _problem(await client.post("/admin/rules", json=rule, headers=admin), 422, "validation_error")
    rule["priority"] = 1
    created = await client.post("/admin/rules", json=rule, headers=admin)
    assert created.status_code == 201, created.text
    path = f"/admin/rules/{created.json()['id']}"
    for patch in ({"priority": -HUGE}, {"priority": BEYOND}):
        _problem(await client.patch(path, json=patch, headers=admin), 422, "validation_error")
    _problem(
        await client.put(path, json={**rule, "revision": BEYOND}, headers=admin),
        422,
        "validation_error",
    )


async def test_nul_characters_are_refused(client: AsyncClient, admin: dict[str, str]) -> None:
    listed = {"name": "blocked\u0000", "kind": "numbers"}
    _problem(await client.post("/admin/lists", json=listed, headers=admin), 422, "validation_error")
    _problem(await client.get("/admin/lists/a%00b", headers=admin), 422, "validation_error")
    _problem(
        await client.get("/audit/verifications?number=%2B4670%00", headers=admin),
        422,
        "validation_error",
    )
    rule = {
        "name": "nul",
        "action": "deny",
        "reason": "nul",
        "when": {"in_list": "x\u0000"},
    }
    _problem(await client.post("/admin/rules", json=rule, headers=admin), 422, "validation_error")


async def test_a_forged_cursor_is_400(client: AsyncClient, admin: dict[str, str]) -> None:
    for payload in (
        json.dumps(["2026-01-01T00:00:00+00:00", "v\u0000"]).encode(),
        b"[" * 300,
    ):
        cursor = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        response = await client.get(f"/audit/verifications?cursor={cursor}", headers=admin)
        _problem(response, 400, "invalid_cursor")


async def test_an_unparsable_body_is_a_documented_400(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/admin/rules",
        content=b"\xff\xfe not json",
        headers={**admin, "content-type": "application/json"},
    )
    _problem(response, 400, "malformed_body")
