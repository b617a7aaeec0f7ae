"""The Alerts page over HTTP, on SQLite and PostgreSQL: firing alerts and containments as
the evaluator made them, approve / extend / lift recorded as the admin API records them,
the CSRF check, and auditors reading masked numbers without changing anything."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from app.store import alerts as alert_store
from tests.alerts.conftest import ADMIN, BOOTSTRAP, alert_settings, runtime_of
from tests.alerts.helpers import ATTACKED, attempts_at, get, put_policy
from tests.web.conftest import csrf_of, sign_in, stored_token

NUMBER = "+46701234567"
MASKED = "+4670****567"
POLICY = """
channels:
  - {name: ops, kind: webhook, url: "http://127.0.0.1:9/hook"}
alerts:
  - name: range-attempts
    metric: attempts
    key: range
    digits: 8
    window: 10m
    above: 5
    notify: [ops]
    contain: {for: 1h, review: true}
"""


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Evaluation is driven by the tests (their own clock), delivery is off."""
    return alert_settings(database_url, tmp_path)


async def contain(engine: AsyncEngine, value: str = NUMBER, status: str = "active") -> int:
    """A containment as an admin or an alert stores it."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        return await alert_store.add_containment(
            conn,
            key="number",
            value=value,
            alert=None,
            status=status,
            duration_seconds=3600,
            created_at=now,
            created_by="test",
            expires_at=now + timedelta(hours=1) if status == "active" else None,
            updated_at=now,
        )


async def containment(client: AsyncClient, containment_id: int) -> dict[str, Any]:
    rows = await get(client, "/admin/containments")
    found: dict[str, Any] = next(c for c in rows if c["id"] == containment_id)
    return found


async def change(client: AsyncClient, path: str, **data: str) -> Response:
    csrf = csrf_of(await client.get("/alerts"))
    return await client.post(path, data={"csrf": csrf, **data})


def notice(response: Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/alerts?notice=")
    return location


async def test_a_firing_alert_proposes_a_containment_that_admins_approve_extend_and_lift(
    client: AsyncClient,
) -> None:
    await put_policy(client, POLICY)
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    await runtime_of(client).alerts.evaluate_once(now)
    [proposed] = await get(client, "/admin/containments")
    assert proposed["status"] == "proposed"
    await sign_in(client, BOOTSTRAP)

    page = (await client.get("/alerts")).text
    firing = re.search(r"<tr><th scope=\"row\">range-attempts</th>.*?</tr>", page, re.S)
    assert firing is not None, "the firing alert is not listed"
    assert f"<code>{ATTACKED}</code>" in firing.group()
    assert ">6<" in firing.group() and "above 5" in firing.group()
    assert "alert.firing" in page or ">firing<" in page
    assert f'aria-label="Approve containment {proposed["id"]}"' in page
    overview = (await client.get("/")).text
    assert re.search(r"Proposed containments</dt><dd>1<", overview)
    assert re.search(r"Firing alerts</dt><dd>1<", overview)

    base = f"/alerts/containments/{proposed['id']}"
    assert "approved" in notice(await change(client, f"{base}/approve"))
    approved = await containment(client, proposed["id"])
    assert (approved["status"], approved["approved_by"]) == ("active", "bootstrap")
    page = (await client.get("/alerts")).text
    assert "containment-active" in page and re.search(r"<td>(59m \d\ds|1h 00m)</td>", page)

    assert "extended+by+6h" in notice(await change(client, f"{base}/extend", duration="6h"))
    extended = await containment(client, proposed["id"])
    expires = datetime.fromisoformat(extended["expires_at"])
    assert expires - datetime.fromisoformat(approved["expires_at"]) == timedelta(hours=6)
    assert extended["extended_by"] == "bootstrap"
    refused = await change(client, f"{base}/extend", duration="5y")
    assert refused.status_code == 400

    assert "lifted" in notice(await change(client, f"{base}/lift"))
    lifted = await containment(client, proposed["id"])
    assert (lifted["status"], lifted["lifted_by"]) == ("lifted", "bootstrap")
    assert "containment-lifted" in (await client.get("/alerts")).text
    again = await change(client, f"{base}/lift")
    assert again.status_code == 409
    assert "cannot lift a containment that is lifted" in again.text
    kinds = [n["type"] for n in await get(client, "/admin/alerts/notifications")]
    for kind in ("containment.approved", "containment.extended", "containment.lifted"):
        assert kind in kinds


async def test_a_change_without_the_sessions_csrf_token_is_refused(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    containment_id = await contain(engine)
    await sign_in(client, BOOTSTRAP)
    path = f"/alerts/containments/{containment_id}/lift"
    assert (await client.post(path)).status_code == 403
    assert (await client.post(path, data={"csrf": "0" * 64})).status_code == 403
    assert (await containment(client, containment_id))["status"] == "active"


async def test_auditors_read_masked_numbers_and_cannot_change_containments(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    containment_id = await contain(engine)
    proposed_id = await contain(engine, "+46709999001", status="proposed")
    await put_policy(client, POLICY)
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    await runtime_of(client).alerts.evaluate_once(now)  # a firing alert, event, notification
    await sign_in(client, BOOTSTRAP)
    admin_page = (await client.get("/alerts")).text
    assert NUMBER in admin_page and f"<code>{ATTACKED}</code>" in admin_page
    client.cookies.clear()
    _, token = await stored_token(engine, "bob", "auditor")
    await sign_in(client, token)
    page = await client.get("/alerts")
    assert page.status_code == 200
    assert NUMBER not in page.text and MASKED in page.text
    assert "+46709999001" not in page.text
    assert ATTACKED not in page.text
    assert page.text.count("<code>+4670****230</code>") >= 4  # firing, containment, event, outbox
    assert "Lift</button>" not in page.text and "Approve</button>" not in page.text
    csrf = csrf_of(page)  # the sign-out form's: a valid token, still no change
    for path in (f"{containment_id}/lift", f"{containment_id}/extend", f"{proposed_id}/approve"):
        response = await client.post(f"/alerts/containments/{path}", data={"csrf": csrf})
        assert response.status_code == 403
        assert "Auditors can read" in response.text
    assert (await containment(client, containment_id))["status"] == "active"
    assert (await containment(client, proposed_id))["status"] == "proposed"
    assert re.search(r"Active containments</dt><dd>1<", (await client.get("/")).text)


async def test_without_alerts_in_the_policy_the_page_says_how_to_add_one(
    client: AsyncClient,
) -> None:
    await sign_in(client, BOOTSTRAP)
    page = (await client.get("/alerts")).text
    assert "No alerts are configured" in page
    assert "docs/admin.md" in page and "Alerts and containment" in page
    assert "contain: {for: 1h" in page
    assert "No containments." in page
    await put_policy(client, POLICY)
    assert "No alerts are configured" not in (await client.get("/alerts")).text
    assert ADMIN  # the API header the helpers use
