"""Adaptive limits through the real endpoint, on SQLite and PostgreSQL, with counters in the
database, in Redis and (deciding without the database) in memory.

The baseline comes from the stored results, whichever way they arrive: late (after the
attempts they belong to were counted), out of order (before their request event) and twice.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.rules.model import Policy
from app.services.baselines import refresh_live
from app.services.intake.event_facts import event_facts
from app.sinch import samples
from app.sinch.events import VerificationRequestEvent
from app.store.models import VerificationRow
from tests.support import SinchSender, install_policy

ADAPTIVE = {
    "name": "block-unverified",
    "action": "deny",
    "reason": "range_velocity",
    "when": {
        "velocity": {
            "key": "range",
            "drop_last": 3,
            "window": "1h",
            "measure": "unverified",
            "limit": {"floor": 2, "factor": 0.5, "verified_in": "14d"},
        }
    },
}
LIMIT = {"floor": 2, "factor": 0.5, "verified_in": "14d"}


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


async def _refresh(sender: SinchSender) -> None:
    runtime = _runtime(sender)
    await refresh_live(runtime.engine, runtime.policies, runtime.baselines, datetime.now(UTC))


async def _ask(sender: SinchSender, number: str) -> dict[str, Any]:
    response = await sender.post(samples.request_event(number=number))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def _verified_history(sender: SinchSender, block: str) -> None:
    """Eight successes in the block: two late, two before their request, two twice."""
    events = [samples.request_event(number=f"{block}{i:03d}") for i in range(8)]
    results = [
        samples.result_event(verification_id=e["id"], number=e["identity"]["endpoint"])
        for e in events
    ]
    for event, result in zip(events[:2], results[:2], strict=True):  # out of order
        assert (await sender.post(result)).status_code == 200
        assert (await sender.post(event)).json()["action"] == "allow"
    for event in events[2:]:
        assert (await sender.post(event)).json()["action"] == "allow"
    for result in results[2:]:  # late: after the attempts that followed
        assert (await sender.post(result)).status_code == 200
    for result in results[4:6]:  # twice
        assert (await sender.post(result)).status_code == 200


async def test_verified_history_raises_the_limit_and_shows_in_the_trace(
    guard: SinchSender,
) -> None:
    await _install(guard, floor=100)  # the history itself is not limited
    block = f"+46701{random.randint(100, 999)}"
    await _verified_history(guard, block)
    await _install(guard)
    await _refresh(guard)
    runtime = _runtime(guard)
    # 8 verified (a duplicate result is one verification): limit max(2, 0.5 x 8) = 4.
    assert runtime.baselines.snapshot()["verified_in:range-3:1209600"] == {f"range-3:{block}": 8}
    # The counters credit a success only to an attempt already counted: the two results that
    # came before their request leave those two attempts unverified (2, then 3, 4, 5, ...).
    actions = [(await _ask(guard, f"{block}{100 + i}"))["action"] for i in range(4)]
    assert actions == ["allow", "allow", "deny", "deny"]
    stored = await _last_decision(guard)
    assert (
        "range-3 unverified 6 in 1h > limit 4 = max(2, 0.5 \u00d7 8 verified in 14d): true"
        in stored
    )


async def test_a_block_nobody_verifies_keeps_the_floor(guard: SinchSender) -> None:
    await _install(guard)
    block = f"+46702{random.randint(100, 999)}"
    await _refresh(guard)
    actions = [(await _ask(guard, f"{block}{i:03d}"))["action"] for i in range(4)]
    assert actions == ["allow", "allow", "deny", "deny"]
    stored = await _last_decision(guard)
    assert "limit 2 = floor 2 (4 or fewer verified in 14d): true" in stored


async def test_memory_counters_decide_with_the_loaded_baseline(guard: SinchSender) -> None:
    """Without the database the local decider counts in memory and uses the last baselines."""
    await _install(guard, floor=100)
    block = f"+46703{random.randint(100, 999)}"
    await _verified_history(guard, block)
    await _install(guard)
    await _refresh(guard)
    local = _runtime(guard).outage.local
    actions = []
    for i in range(6):
        event = VerificationRequestEvent.model_validate(
            samples.request_event(number=f"{block}{200 + i}")
        )
        decision, facts = await local.decide(
            event_facts(event, application=None, now=datetime.now(UTC))
        )
        actions.append(decision.action)
    assert facts.aggregates["verified_in:range-3:1209600"] == 8.0
    assert actions == ["allow"] * 4 + ["deny"] * 2


async def _install(sender: SinchSender, floor: int = 2) -> None:
    rule: Any = ADAPTIVE | {}
    rule["when"] = {"velocity": ADAPTIVE["when"]["velocity"] | {"limit": LIMIT | {"floor": floor}}}  # type: ignore[index]
    policy = Policy.model_validate({"rules": [rule], "default_action": "allow"})
    await install_policy(_runtime(sender), policy)


async def _last_decision(sender: SinchSender) -> str:
    async with _runtime(sender).engine.connect() as conn:
        row = (
            await conn.execute(
                select(VerificationRow.decision)
                .order_by(VerificationRow.requested_at.desc())
                .limit(1)
            )
        ).scalar_one()
    return str(row)
