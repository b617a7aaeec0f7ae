"""The starter's budgets for a destination with nothing verified today, judged from its first
attempt (no `min_history`): allowed spend for every price, one allowed unverified attempt
where an attempt costs 0.20 or more (two once one has verified). Through the real endpoint on SQLite and PostgreSQL, with
counters in the database, in Redis and (deciding without the database) in memory; results
arrive late, twice, and before their request event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.rules.starter import starter_policy
from app.services.baselines import refresh_live
from app.services.intake.event_facts import event_facts
from app.sinch import samples
from app.sinch.events import VerificationRequestEvent
from app.store.models import VerificationRow
from tests.support import SinchSender, install_policy

SOLOMON = "+67774"  # Solomon Islands mobiles: +677 74x xxxx
FIJI = "+67970"  # Fiji mobiles: +679 70x xxxx


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


async def _starter(sender: SinchSender) -> None:
    runtime = _runtime(sender)
    now = datetime.now(UTC)
    await install_policy(runtime, starter_policy(), now=now)
    await refresh_live(runtime.engine, runtime.policies, runtime.baselines, now)


async def _ask(sender: SinchSender, event: dict[str, Any]) -> str:
    response = await sender.post(event)
    assert response.status_code == 200
    action: str = response.json()["action"]
    return action


async def _decision(sender: SinchSender, verification_id: str) -> tuple[str | None, str]:
    async with _runtime(sender).engine.connect() as conn:
        stmt = select(VerificationRow.rule_name, VerificationRow.decision).where(
            VerificationRow.id == verification_id
        )
        row = (await conn.execute(stmt)).one()
        return row.rule_name, str(row.decision)


async def test_a_new_destination_gets_a_budget_in_money_until_one_verifies(
    guard: SinchSender,
) -> None:
    await _starter(guard)
    # 0.15 an attempt (under the high-cost price): 13 fit in 2.00, the 14th does not.
    events = [samples.request_event(number=f"{FIJI}{i:05d}", price=0.15) for i in range(16)]
    actions = [await _ask(guard, event) for event in events[:15]]
    assert actions == ["allow"] * 13 + ["deny"] * 2
    rule, trace = await _decision(guard, events[13]["id"])
    assert rule == "new-destination"
    assert "country verified 0 in 1d <= at most 0: true" in trace
    assert "country allowed spend 2.1 in 1h > max 2: true" in trace
    # A real user's result, late and delivered twice: the destination is alive.
    result = samples.result_event(verification_id=events[0]["id"], number=f"{FIJI}00000")
    for _ in range(2):
        assert (await guard.post(result)).status_code == 200
    assert await _ask(guard, events[15]) == "allow"
    assert (
        "country verified 1 in 1d <= at most 0: false"
        in (await _decision(guard, events[15]["id"]))[1]
    )


async def test_a_costly_new_destination_gets_one_attempt_until_one_verifies(
    guard: SinchSender,
) -> None:
    await _starter(guard)
    events = [samples.request_event(number=f"{SOLOMON}{i:05d}", price=0.3) for i in range(6)]
    assert [await _ask(guard, event) for event in events[:2]] == ["allow", "deny"]
    rule, trace = await _decision(guard, events[1]["id"])
    assert rule == "high-cost-new-destination"
    assert "country allowed unverified 2 in 1h > max 1: true" in trace
    # The first one verifies, late and twice: two unverified at a time from now on.
    success = samples.result_event(verification_id=events[0]["id"], number=f"{SOLOMON}00000")
    for _ in range(2):
        assert (await guard.post(success)).status_code == 200
    # The third one's failure arrives before its request event (out of order).
    early = samples.result_event(verification_id=events[2]["id"], number=f"{SOLOMON}00002")
    early |= {"status": "FAIL", "reason": "Expired"}
    assert (await guard.post(early)).status_code == 200
    actions = [await _ask(guard, event) for event in events[2:5]]
    assert actions == ["allow", "allow", "deny"]
    rule, trace = await _decision(guard, events[4]["id"])
    assert rule == "high-cost-dead-destination"
    assert "country allowed unverified 3 in 1h > max 2: true" in trace


async def test_memory_counters_keep_the_new_destination_budgets(guard: SinchSender) -> None:
    """Without the database the local decider counts in memory: the same budgets."""
    await _starter(guard)
    local = _runtime(guard).outage.local
    seen: dict[float, list[str]] = {0.15: [], 0.3: []}
    for price, actions in seen.items():
        prefix = FIJI if price < 0.2 else SOLOMON
        for i in range(15):
            raw = samples.request_event(number=f"{prefix}{i:05d}", price=price)
            event = VerificationRequestEvent.model_validate(raw)
            facts = event_facts(event, application=None, now=datetime.now(UTC))
            decision, _ = await local.decide(facts)
            actions.append(decision.action)
    assert seen == {0.15: ["allow"] * 13 + ["deny"] * 2, 0.3: ["allow"] + ["deny"] * 14}
