"""The admin API's reads run on the runtime's reader (api/admin_deps.py `ReadDep`): on SQLite
beside the one connection request events are decided on, so reading a big blocklist or a
policy's history during an attack holds no decision back. Each read is parked here while
request events are decided, and still sees what was written just before it."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from app.services.alerts import containments
from app.services.policy import io as policy_io
from app.services.policy import lists, rules
from tests.support import SinchSender
from tests.support_beside import asked_beside_requests, park

LIST = "pumped"
READS: dict[str, tuple[str, Any, str]] = {
    "lists": ("/admin/lists", lists, "list_lists"),
    "one list": (f"/admin/lists/{LIST}", lists, "get_list"),
    "rules": ("/admin/rules", rules, "list_rules"),
    "one rule": ("/admin/rules/{rule}", rules, "get_rule"),
    "revisions": ("/admin/rules/{rule}/revisions", rules, "list_revisions"),
    "policy": ("/admin/policy", policy_io, "export_policy"),
    "containments": ("/admin/containments", containments, "list_containments"),
    "alert events": ("/admin/alerts/events", containments, "alert_history"),
    "notifications": ("/admin/alerts/notifications", containments, "notifications"),
}


@pytest.mark.parametrize("read", READS)
async def test_an_admin_read_holds_no_request_event_back(
    read: str,
    client: AsyncClient,
    admin: dict[str, str],
    sinch: SinchSender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = await client.post("/admin/lists", json={"name": LIST, "kind": "prefix"}, headers=admin)
    assert made.status_code == 201, made.text
    entry = {"entries": [{"value": "+4479", "note": "written just before"}]}
    added = await client.post(f"/admin/lists/{LIST}/entries", json=entry, headers=admin)
    assert added.status_code == 200, added.text
    rule = (await client.get("/admin/rules", headers=admin)).json()[0]["id"]
    template, module, function = READS[read]
    parked = park(monkeypatch, module, function)

    response = await asked_beside_requests(
        client, admin, sinch, parked, template.format(rule=rule), first=6_234_500
    )

    assert response.status_code == 200, response.text
    if read in ("lists", "one list", "policy"):
        assert LIST in response.text
    if read == "one list":
        assert "written just before" in response.text
