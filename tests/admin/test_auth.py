"""Bearer tokens on /admin: 401 without a known token, 403 for auditors writing."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from app.sinch import samples
from tests.admin.conftest import BOOTSTRAP
from tests.admin.helpers import BLOCKLIST_RULE

WRITES = [
    ("POST", "/admin/rules", BLOCKLIST_RULE),
    ("PATCH", "/admin/rules/1", {"mode": "off"}),
    ("DELETE", "/admin/rules/1", None),
    ("POST", "/admin/rules/1/revisions/1/restore", None),
    ("POST", "/admin/lists", {"name": "vip", "kind": "number"}),
    ("DELETE", "/admin/lists/blocklist", None),
    ("POST", "/admin/lists/blocklist/entries", {"entries": [{"value": "+46701234567"}]}),
    ("PUT", "/admin/policy", {"rules": []}),
]
READS = ["/admin/rules", "/admin/rules/1", "/admin/rules/1/revisions", "/admin/lists"]
READS += ["/admin/lists/blocklist", "/admin/policy", "/admin/policy?format=yaml"]


@pytest.mark.parametrize("path", ["/admin/rules", "/admin/policy", "/admin/lists"])
async def test_missing_token_is_401_problem(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "missing_token"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_unknown_token_is_401(client: AsyncClient) -> None:
    response = await client.get("/admin/rules", headers={"Authorization": "Bearer vg_nope"})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_auditor_cannot_write(
    client: AsyncClient, auditor: dict[str, str], method: str, path: str, body: object
) -> None:
    before = await client.get("/admin/policy", headers=auditor)
    response = await client.request(method, path, json=body, headers=auditor)
    assert response.status_code == 403
    assert response.json()["code"] == "admin_required"
    assert (await client.get("/admin/policy", headers=auditor)).json() == before.json()


@pytest.mark.parametrize("path", READS)
async def test_auditor_can_read(client: AsyncClient, auditor: dict[str, str], path: str) -> None:
    assert (await client.get(path, headers=auditor)).status_code == 200


async def test_auditor_can_dry_run_evaluate(client: AsyncClient, auditor: dict[str, str]) -> None:
    body = {"event": samples.request_event(number="+46701234567")}
    response = await client.post("/admin/evaluate", json=body, headers=auditor)
    assert response.status_code == 200
    assert response.json()["action"] == "allow"


async def test_bootstrap_token_is_an_admin(client: AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {BOOTSTRAP}"}
    response = await client.post("/admin/rules", json=BLOCKLIST_RULE, headers=headers)
    assert response.status_code == 201
    assert response.json()["updated_by"] == "bootstrap"
