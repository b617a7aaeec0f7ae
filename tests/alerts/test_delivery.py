"""Notifications: a real HTTP receiver verifies the Standard Webhooks signature; delivery is
retried with backoff after the receiver failed, and survives a restart of the evaluator."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from tests.alerts.conftest import ADMIN, Worker, auditor_headers, runtime_of
from tests.alerts.helpers import ATTACKED, attempts_at, get, policy_yaml, put_policy
from tests.alerts.receiver import Receiver


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check, written out here independently of the app's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return headers["webhook-signature"] == f"v1,{expected}"


async def test_signed_delivery_retried_after_receiver_failed_and_after_restart(
    client: AsyncClient, worker: Worker, receiver: Receiver
) -> None:
    await put_policy(client, policy_yaml(receiver))
    exported = await get(client, "/admin/policy")
    secret = exported["channels"][0]["secret"]
    assert secret.startswith("whsec_")  # generated for the user
    auditor = await auditor_headers(client)
    seen = (await client.get("/admin/policy", headers=auditor)).json()
    assert seen["channels"][0]["secret"] == "whsec_********"
    assert secret not in (await client.get("/admin/policy?format=yaml", headers=auditor)).text
    # Importing the redacted export keeps the stored secret (and changes nothing).
    again = await client.put("/admin/policy", json=seen, headers=ADMIN)
    assert again.json()["changed"] is False

    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    async with worker() as evaluator:  # fires, then stops with everything still undelivered
        assert (await runtime_of(evaluator).alerts.evaluate_once(now)).transitions == 1
    assert receiver.received == []

    receiver.failures["/hook"] = 2
    jobs = runtime_of(client).alerts
    assert await jobs.deliver_once(now) == 2  # Slack got both; the webhook failed twice
    assert await jobs.deliver_once(now + timedelta(seconds=1)) == 0  # backing off
    assert await jobs.deliver_once(now + timedelta(seconds=3)) == 2
    assert await jobs.deliver_once(now + timedelta(seconds=60)) == 0  # each one once

    hooks = [r for r in receiver.received if r.path == "/hook"]
    assert len(hooks) == 4
    delivered = hooks[2:]
    assert all(signed_by(secret, r.headers, r.body) for r in hooks)
    assert not signed_by(
        "whsec_" + base64.b64encode(b"x" * 24).decode(), hooks[0].headers, hooks[0].body
    )
    assert hooks[0].headers["webhook-id"] == delivered[0].headers["webhook-id"]  # a retry
    bodies = {r.json()["type"]: r.json() for r in delivered}
    assert set(bodies) == {"alert.firing", "containment.created"}
    firing = bodies["alert.firing"]
    assert (firing["alert"], firing["key"], firing["value"]) == (
        "range-attempts",
        "range",
        ATTACKED,
    )
    assert (firing["observed"], firing["threshold"], firing["window"]) == (6, 5, "10m")
    assert firing["containment"]["status"] == "active"

    slack = [r.json() for r in receiver.received if r.path == "/slack"]
    assert len(slack) == 2
    assert "range-attempts" in slack[0]["text"] and ATTACKED in slack[0]["text"]
    assert "https://console.example/containments" in slack[0]["text"]

    outbox = await get(client, "/admin/alerts/notifications")
    assert all(n["delivered_at"] for n in outbox)
    assert sorted(n["attempts"] for n in outbox) == [1, 1, 2, 2]


async def test_delivery_gives_up_after_max_attempts(
    client: AsyncClient, receiver: Receiver
) -> None:
    await put_policy(client, policy_yaml(receiver).replace("/hook", "/down"))
    receiver.failures["/down"] = 100
    jobs = runtime_of(client).alerts
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    await jobs.evaluate_once(now)
    at = now
    for _ in range(12):
        await jobs.deliver_once(at)
        at += timedelta(hours=1)
    outbox = [n for n in await get(client, "/admin/alerts/notifications") if n["channel"] == "ops"]
    assert all(n["attempts"] == 10 and n["failed_at"] and not n["delivered_at"] for n in outbox)
    assert all(n["last_error"] == "HTTP 500" for n in outbox)
    metrics = (await client.get("/metrics")).text
    assert 'verifyguard_notifications_total{channel="webhook",outcome="failed"} 2.0' in metrics
