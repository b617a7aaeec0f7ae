"""How soon a containment is in force: durable (committed, so every worker can load it) as
soon as it is made, not once the whole evaluation is done (under load the other alerts'
observations took ~1 s and pushed "in force within 2 s" past 2 s); and a proposal of an
alert that contains dead keys at once goes into force once its key can be judged dead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerting import Observation
from app.rules.alerts import Alert
from app.services.alerts import evaluator
from app.store import alerts as store
from app.store.base import create_engine
from tests.alerts.conftest import runtime_of
from tests.alerts.helpers import (
    ATTACKED,
    LEGIT,
    attempts_at,
    get,
    policy_yaml,
    put_policy,
    until_reason,
)
from tests.alerts.receiver import Receiver
from tests.audit.rows import insert_rows, row
from tests.support import SinchSender

LATER = """
  - name: later
    metric: attempts
    key: global
    window: 10m
    above: 1000
    notify: [ops]
"""


async def test_a_containment_is_committed_before_the_next_alert_is_observed(
    client: AsyncClient, receiver: Receiver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await put_policy(client, policy_yaml(receiver) + LATER)
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    engine = create_engine(database_url)  # another process's connection
    seen: list[list[tuple[str, str]]] = []
    observe = evaluator.observe

    async def watching(conn: AsyncConnection, alert: Alert, at: datetime) -> dict[str, Observation]:
        if alert.name == "later":  # what another worker sees while the evaluation goes on
            async with engine.connect() as other:
                rows = await store.containment_rows(other)
                seen.append([(row.value, row.status) for row in rows])
        return await observe(conn, alert, at)

    monkeypatch.setattr(evaluator, "observe", watching)
    try:
        tick = await runtime_of(client).alerts.evaluate_once(now)
    finally:
        monkeypatch.undo()
        await engine.dispose()
    assert (tick.fired, tick.containments) == (1, 1)
    assert seen == [[(ATTACKED, "active")]]
    # committed with its alert's state, event and notices: nothing fires twice
    assert (await runtime_of(client).alerts.evaluate_once(now + timedelta(seconds=5))).fired == 0
    events = await get(client, "/admin/alerts/events")
    assert [(e["kind"], e["containment_id"] is not None) for e in events] == [
        ("alert.firing", True)
    ]
    notices = {n["type"] for n in await get(client, "/admin/alerts/notifications")}
    assert {"alert.firing", "containment.created"} <= notices


async def test_a_proposal_goes_into_force_once_its_key_can_be_judged_dead(
    client: AsyncClient, sinch: SinchSender, receiver: Receiver
) -> None:
    """`review: true, active_if_dead_over`: fired before results flowed (a fresh database),
    deadness cannot be judged and the containment is proposed; at the first evaluation where
    it can and the key is dead, while the alert still fires, it goes into force by itself."""
    document = policy_yaml(receiver, review=True).replace(
        "review: true", "review: true, active_if_dead_over: 7d"
    )
    await put_policy(client, document)
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    jobs = runtime_of(client).alerts
    assert (await jobs.evaluate_once(now)).containments == 1
    [proposed] = await get(client, "/admin/containments")
    assert proposed["status"] == "proposed"  # nothing verified anywhere yet: not judged
    elsewhere = now - timedelta(minutes=2)
    real = row(
        number=LEGIT,
        status="SUCCESSFUL",
        requested_at=elsewhere,
        decided_at=elsewhere,
        created_at=elsewhere,
    )
    await insert_rows(runtime_of(client).engine, [real])  # results flow: judged dead now
    later = now + timedelta(seconds=5)
    await jobs.evaluate_once(later)
    [active] = await get(client, "/admin/containments")
    assert (active["id"], active["status"]) == (proposed["id"], "active")
    assert datetime.fromisoformat(active["expires_at"]) == later + timedelta(hours=1)
    await until_reason(client, sinch, f"{ATTACKED}999", "contained")
    kinds = [n["type"] for n in await get(client, "/admin/alerts/notifications")]
    assert kinds.count("containment.activated") == 2  # one per channel, once
    await jobs.evaluate_once(later + timedelta(seconds=5))
    kinds = [n["type"] for n in await get(client, "/admin/alerts/notifications")]
    assert kinds.count("containment.activated") == 2


async def test_a_proposal_for_a_live_key_waits_for_an_admin(
    client: AsyncClient, receiver: Receiver
) -> None:
    document = policy_yaml(receiver, review=True).replace(
        "review: true", "review: true, active_if_dead_over: 7d"
    )
    await put_policy(client, document)
    now = datetime.now(UTC)
    await attempts_at(client, now - timedelta(minutes=1))
    jobs = runtime_of(client).alerts
    await jobs.evaluate_once(now)
    earlier = now - timedelta(minutes=2)
    verified = [
        row(
            number=f"{ATTACKED}{n}",
            status="SUCCESSFUL",
            requested_at=earlier,
            decided_at=earlier,
            created_at=earlier,
        )
        for n in (997, 998)
    ]
    await insert_rows(runtime_of(client).engine, verified)  # 2 of 8: alive
    await jobs.evaluate_once(now + timedelta(seconds=5))
    [proposed] = await get(client, "/admin/containments")
    assert proposed["status"] == "proposed"
