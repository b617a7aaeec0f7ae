"""A destination that never verifies, judged only after `min_history`, through the real
endpoint on SQLite and PostgreSQL, with counters in the database, in Redis and (deciding
without the database) in memory.

The first-attempt times come from the stored verifications with the baselines; results
arrive late (after the attempts that followed), twice, and before their request event.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from app.rules.model import Policy
from app.services.baselines import refresh_live
from app.services.intake.event_facts import event_facts
from app.services.policy.admin import replace_policy
from app.sinch import samples
from app.sinch.events import REQUEST_EVENT, VerificationRequestEvent
from app.store.models import VerificationRow
from app.store.tables import callbacks, verifications
from tests.support import SinchSender, policy_told

DEAD = {
    "name": "dead",
    "action": "deny",
    "reason": "dead_destination",
    "when": {
        "all": [
            {"verified": {"key": "country", "window": "1d", "at_most": 0, "min_history": "1m"}},
            {
                "velocity": {
                    "key": "country",
                    "window": "1h",
                    "max": 2,
                    "measure": "unverified",
                    "only_allowed": True,
                }
            },
        ]
    },
}
SOLOMON = "+67774"  # Solomon Islands mobiles: +677 74x xxxx
FIJI = "+67970"  # Fiji mobiles: +679 70x xxxx


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


async def _setup(sender: SinchSender, *, history: str | None) -> None:
    """The policy, an attempt to `history` two minutes ago (stored as a past one would be:
    with its inbox claim), and the baselines refreshed."""
    runtime = _runtime(sender)
    now = datetime.now(UTC)
    policy = Policy.model_validate({"rules": [DEAD], "default_action": "allow"})
    async with runtime.engine.begin() as conn:
        await replace_policy(conn, policy=policy, now=now, actor="test")
        if history is not None:
            earlier = now - timedelta(minutes=2)
            ident = str(uuid.uuid4())
            claim = {"received_at": earlier, "event": REQUEST_EVENT, "verification_id": ident}
            claim |= {"dedupe_key": ident, "signature": "valid", "http_status": 200}
            stmt = insert(callbacks).values(**claim, raw_body=b"{}").returning(callbacks.c.id)
            callback_id = (await conn.execute(stmt)).scalar_one()
            row = {"id": ident, "created_at": earlier, "requested_at": earlier}
            row |= {"number": f"{history}99999", "country": _country(history), "action": "deny"}
            row |= {"request_callback_id": callback_id}
            await conn.execute(insert(verifications).values(**row))
    await policy_told(runtime)
    await refresh_live(runtime.engine, runtime.policies, runtime.baselines, now)


def _country(prefix: str) -> str:
    return {SOLOMON: "SB", FIJI: "FJ"}[prefix]


async def _ask(sender: SinchSender, event: dict[str, Any]) -> str:
    response = await sender.post(event)
    assert response.status_code == 200
    action: str = response.json()["action"]
    return action


async def _trace(sender: SinchSender, verification_id: str) -> str:
    async with _runtime(sender).engine.connect() as conn:
        stmt = select(VerificationRow.decision).where(VerificationRow.id == verification_id)
        return str((await conn.execute(stmt)).scalar_one())


async def test_an_old_destination_nobody_verifies_is_stopped_until_one_verifies(
    guard: SinchSender,
) -> None:
    await _setup(guard, history=SOLOMON)
    events = [samples.request_event(number=f"{SOLOMON}{i:05d}") for i in range(5)]
    actions = [await _ask(guard, event) for event in events[:4]]
    assert actions == ["allow", "allow", "deny", "deny"]
    trace = await _trace(guard, events[2]["id"])
    assert "country verified 0 in 1d <= at most 0, first attempt 1" in trace
    assert "s ago >= min_history 1m: true" in trace
    assert "country allowed unverified 3 in 1h > max 2: true" in trace
    # A real user's result, late and delivered twice: the country is alive again.
    result = samples.result_event(verification_id=events[0]["id"], number=f"{SOLOMON}00000")
    for _ in range(2):
        assert (await guard.post(result)).status_code == 200
    assert await _ask(guard, events[4]) == "allow"
    assert "country verified 1 in 1d <= at most 0" in await _trace(guard, events[4]["id"])


async def test_a_new_destination_is_not_judged_in_its_first_minute(guard: SinchSender) -> None:
    # A result before its request event stores no request time: it starts no history.
    early = samples.request_event(number=f"{FIJI}00000")
    result = samples.result_event(verification_id=early["id"], number=f"{FIJI}00000")
    assert (await guard.post(result)).status_code == 200
    await _setup(guard, history=None)
    assert _runtime(guard).baselines.snapshot()["first_seen:country:86400"] == {}
    events = [early] + [samples.request_event(number=f"{FIJI}{i:05d}") for i in range(1, 6)]
    assert [await _ask(guard, event) for event in events] == ["allow"] * 6
    trace = await _trace(guard, events[-1]["id"])
    assert "no earlier attempt < min_history 1m: false" in trace
    # Once refreshed, the history is seconds old: still not judged.
    await _setup(guard, history=None)
    assert await _ask(guard, samples.request_event(number=f"{FIJI}00009")) == "allow"


async def test_memory_counters_judge_with_the_loaded_first_attempts(guard: SinchSender) -> None:
    """Without the database the local decider counts in memory with the last history."""
    await _setup(guard, history=SOLOMON)  # Fiji: none, a new destination
    local = _runtime(guard).outage.local
    actions: dict[str, list[str]] = {SOLOMON: [], FIJI: []}
    for prefix, seen in actions.items():
        for i in range(4):
            event = VerificationRequestEvent.model_validate(
                samples.request_event(number=f"{prefix}{i:05d}")
            )
            facts = event_facts(event, application=None, now=datetime.now(UTC))
            decision, _ = await local.decide(facts)
            seen.append(decision.action)
    assert actions == {SOLOMON: ["allow", "allow", "deny", "deny"], FIJI: ["allow"] * 4}
