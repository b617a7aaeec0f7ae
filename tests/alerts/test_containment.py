"""Alerts end to end on SQLite and PostgreSQL: one firing across evaluators, containment on
every worker within 2 s, review and approval, lift, extend, the allowlist."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

from app.main import create_app
from app.settings import Settings
from app.store.models import VerificationRow
from tests.alerts.conftest import ADMIN, Worker, alert_settings, auditor_headers, runtime_of
from tests.alerts.helpers import (
    ALLOWED,
    ATTACKED,
    LEGIT,
    attempts_at,
    get,
    policy_yaml,
    put_policy,
    reason_of,
    until_reason,
)
from tests.alerts.receiver import Receiver
from tests.audit.rows import insert_rows, row
from tests.support import SinchSender


async def test_two_evaluators_fire_once_and_every_worker_contains_within_2s(
    client: AsyncClient, sinch: SinchSender, worker: Worker, receiver: Receiver, settings: Settings
) -> None:
    await put_policy(client, policy_yaml(receiver))
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    async with worker() as second:
        first_jobs, second_jobs = runtime_of(client).alerts, runtime_of(second).alerts
        ticks = await asyncio.gather(
            first_jobs.evaluate_once(now),
            second_jobs.evaluate_once(now),
            second_jobs.evaluate_once(now + timedelta(seconds=5)),
            first_jobs.evaluate_once(now + timedelta(seconds=5)),
        )
        assert sum(tick.transitions for tick in ticks) == 1
        holders = {t.leader for t in ticks[:2]}
        assert holders == {True, False}  # one of the two took the lease, the other skipped
        events = await get(client, "/admin/alerts/events")
        assert [(e["kind"], e["value"]) for e in events] == [("alert.firing", ATTACKED)]
        assert events[0]["observed"] == 6 and events[0]["threshold"] == 5
        [contained] = await get(client, "/admin/containments")
        assert (contained["key"], contained["value"], contained["status"]) == (
            "range",
            ATTACKED,
            "active",
        )
        assert contained["created_by"] == "alert:range-attempts"
        assert datetime.fromisoformat(contained["expires_at"]) == now + timedelta(hours=1)

        other = SinchSender(second, path=settings.callback_path)
        elapsed, decision = await until_reason(second, other, f"{ATTACKED}999", "contained")
        assert elapsed < 2.0
        [entry] = decision["trace"]
        assert entry["rule"] == f"containment:{contained['id']}"
        assert entry["conditions"][0]["expected"]["alert"] == "range-attempts"
        assert entry["conditions"][0]["expected"]["containment"] == contained["id"]
        scraped = (await second.get("/metrics")).text
        assert "verifyguard_containments_active 1.0" in scraped
        leader = first_jobs if ticks[0].leader else second_jobs
        leader_app = client if leader is first_jobs else second
        scraped = (await leader_app.get("/metrics")).text
        assert "verifyguard_alerts_firing 1.0" in scraped
        assert 'verifyguard_alert_transitions_total{kind="alert.firing"} 1.0' in scraped
        # The worker that evaluated denies too; the rest of the country is unaffected.
        await until_reason(client, sinch, f"{ATTACKED}998", "contained")
        assert (await reason_of(second, other, LEGIT))[0] == "default"
        # Allowlisted numbers inside the contained range are never contained.
        assert (await reason_of(second, other, ALLOWED))[0] == "allowlisted"


async def test_review_holds_containment_until_approved_then_lift_and_extend(
    client: AsyncClient, sinch: SinchSender, receiver: Receiver
) -> None:
    await put_policy(client, policy_yaml(receiver, review=True))
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    await runtime_of(client).alerts.evaluate_once(now)
    [proposed] = await get(client, "/admin/containments")
    assert proposed["status"] == "proposed" and proposed["expires_at"] is None
    await asyncio.sleep(1.2)  # the watcher polled: a proposed containment blocks nothing
    assert (await reason_of(client, sinch, f"{ATTACKED}999"))[0] == "default"

    auditor = await auditor_headers(client)
    base = f"/admin/containments/{proposed['id']}"
    assert (await client.post(f"{base}/approve", headers=auditor)).status_code == 403
    assert (await client.get("/admin/containments", headers=auditor)).status_code == 200
    approved = await client.post(f"{base}/approve", headers=ADMIN)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active"
    assert approved.json()["approved_by"] == "bootstrap"
    await until_reason(client, sinch, f"{ATTACKED}999", "contained")

    expires = datetime.fromisoformat(approved.json()["expires_at"])
    extended = await client.post(f"{base}/extend", headers=ADMIN, json={"for": "2h"})
    assert extended.status_code == 200, extended.text
    assert datetime.fromisoformat(extended.json()["expires_at"]) == expires + timedelta(hours=2)

    lifted = await client.post(f"{base}/lift", headers=ADMIN)
    assert lifted.status_code == 200 and lifted.json()["status"] == "lifted"
    assert lifted.json()["lifted_by"] == "bootstrap"
    await until_reason(client, sinch, f"{ATTACKED}997", "default")

    again = await client.post(f"{base}/approve", headers=ADMIN)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    missing = await client.post("/admin/containments/999999/lift", headers=ADMIN)
    assert missing.status_code == 404
    kinds = [n["type"] for n in await get(client, "/admin/alerts/notifications")]
    for kind in ("containment.proposed", "containment.approved", "containment.extended"):
        assert kind in kinds
    assert "containment.lifted" in kinds


async def test_review_is_skipped_where_nobody_verified_within_the_period(
    client: AsyncClient, receiver: Receiver
) -> None:
    """`active_if_dead_over`: a dead range is contained at once, a live one proposed."""
    document = policy_yaml(receiver, review=True).replace(
        "review: true", "review: true, active_if_dead_over: 7d"
    )
    await put_policy(client, document)
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    live = "+46709876"
    await attempts_at(client, now - timedelta(minutes=1), prefix=live)
    earlier = now - timedelta(days=2)
    verified = [
        row(
            number=f"{live}{n}",
            status="SUCCESSFUL",
            requested_at=earlier,
            decided_at=earlier,
            created_at=earlier,
        )
        for n in (997, 998, 999)
    ]
    # the live range: 3 of its 9 allowed attempts in 7 days verified (the attacked one: none)
    await insert_rows(runtime_of(client).engine, verified)
    assert (await runtime_of(client).alerts.evaluate_once(now)).fired == 2
    status = {c["value"]: c["status"] for c in await get(client, "/admin/containments")}
    assert status == {ATTACKED: "active", live: "proposed"}
    kinds = {
        (n["type"], n["payload"]["value"]) for n in await get(client, "/admin/alerts/notifications")
    }
    assert ("containment.created", ATTACKED) in kinds
    assert ("containment.proposed", live) in kinds


async def test_a_dead_keys_containment_lifts_itself_once_someone_verifies_there(
    client: AsyncClient, sinch: SinchSender, receiver: Receiver
) -> None:
    """Contained because nobody verified in the range (7 days); once the range converts as real
    users do (20 % of its allowed attempts verified, counting the ones allowed before the
    block), the premise is gone: the next evaluation lifts it. One verification is not enough."""
    document = policy_yaml(receiver).replace("above: 5", "above: 5\n    dead_over: 7d")
    await put_policy(client, document)
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    jobs = runtime_of(client).alerts
    assert (await jobs.evaluate_once(now)).fired == 0  # nobody verified anywhere: not judged
    elsewhere = now - timedelta(minutes=2)
    real = row(
        number=LEGIT,
        status="SUCCESSFUL",
        requested_at=elsewhere,
        decided_at=elsewhere,
        created_at=elsewhere,
    )
    await insert_rows(runtime_of(client).engine, [real])
    assert (await jobs.evaluate_once(now)).containments == 1
    await until_reason(client, sinch, f"{ATTACKED}999", "contained")
    at = now - timedelta(seconds=50)

    async def verified(*suffixes: str) -> None:
        rows = [
            row(
                number=f"{ATTACKED}{n}",
                status="SUCCESSFUL",
                requested_at=at,
                decided_at=at,
                created_at=at,
            )
            for n in suffixes
        ]
        await insert_rows(runtime_of(client).engine, rows)

    # Allowed so far: the six stored ones and those `until_reason` sent before the block held.
    allowed = await allowed_in_range(client)
    assert allowed >= 6
    await verified("100")  # 1 of 7 or more: pumping gets ~1 % verified, not a real user's 85 %
    await jobs.evaluate_once(now + timedelta(seconds=5))
    assert [c["status"] for c in await get(client, "/admin/containments")] == ["active"]
    # The range converts as real users do: at least 20 % of its allowed attempts verified.
    more = [str(101 + i) for i in range(-(-allowed // 4) - 1)]
    await verified(*more)
    await jobs.evaluate_once(now + timedelta(seconds=10))
    [lifted] = await get(client, "/admin/containments")
    assert lifted["status"] == "lifted"
    assert lifted["lifted_by"] == "alert:range-attempts (verified since)"
    await until_reason(client, sinch, f"{ATTACKED}998", "default")
    kinds = [n["type"] for n in await get(client, "/admin/alerts/notifications")]
    assert "containment.lifted" in kinds


async def allowed_in_range(client: AsyncClient) -> int:
    """Attempts stored as allowed in the attacked range."""
    async with runtime_of(client).engine.connect() as conn:
        stmt = (
            select(func.count())
            .select_from(VerificationRow)
            .where(VerificationRow.number.like(f"{ATTACKED}%"), VerificationRow.action == "allow")
        )
        return int((await conn.execute(stmt)).scalar_one())


async def test_allowlisted_number_is_never_contained(
    client: AsyncClient, receiver: Receiver
) -> None:
    document = policy_yaml(receiver).replace("key: range\n    digits: 8", "key: number")
    await put_policy(client, document)
    now = datetime.now(UTC)
    # Six attempts each for the allowlisted number and for another: both fire (the alert is
    # still worth knowing about), only the other one is contained.
    engine = runtime_of(client).engine
    at = now - timedelta(minutes=1)
    await insert_rows(
        engine,
        [
            row(number=n, requested_at=at, decided_at=at, created_at=at)
            for n in [ALLOWED, LEGIT] * 6
        ],
    )
    await runtime_of(client).alerts.evaluate_once(now)
    fired = {e["value"] for e in await get(client, "/admin/alerts/events")}
    assert {ALLOWED, LEGIT} <= fired
    contained = {c["value"] for c in await get(client, "/admin/containments")}
    assert LEGIT in contained and ALLOWED not in contained


async def test_containment_applies_with_redis_counters(
    database_url: str, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """With counters in Redis the request path reads the policy another way: same result."""
    settings = alert_settings(database_url, tmp_path).model_copy(update={"redis_url": redis_url})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://redis.test") as http:
            http.app = app  # type: ignore[attr-defined]
            sinch = SinchSender(http, path=settings.callback_path)
            await put_policy(http, policy_yaml(receiver))
            now = datetime.now(UTC)
            await attempts_at(http, now - timedelta(minutes=1))
            assert (await runtime_of(http).alerts.evaluate_once(now)).transitions == 1
            elapsed, _ = await until_reason(http, sinch, f"{ATTACKED}999", "contained")
            assert elapsed < 2.0
            assert (await reason_of(http, sinch, LEGIT))[0] == "default"
