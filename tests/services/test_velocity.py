"""Velocity and conversion aggregates through the real endpoint, under concurrent bursts.

The same assertions run with counters in SQLite, in PostgreSQL and in Redis: a burst of
simultaneous attempts on one number cannot slip past a limit.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from app.rules.model import Policy
from app.sinch import samples
from app.store.models import CounterRow, VerificationRow
from tests.support import SinchSender, install_policy


def _policy(*rules: dict[str, Any]) -> Policy:
    return Policy.model_validate({"rules": list(rules), "default_action": "allow"})


NUMBER_LIMIT = {
    "name": "number-velocity",
    "action": "deny",
    "reason": "number_velocity",
    "when": {"velocity": {"key": "number", "window": "1h", "max": 5}},
}
ALLOWED_LIMIT = {
    "name": "allowed-velocity",
    "action": "deny",
    "reason": "number_velocity",
    "when": {"velocity": {"key": "number", "window": "1h", "max": 3, "only_allowed": True}},
}
SPEND_LIMIT = {
    "name": "range-spend",
    "action": "deny",
    "reason": "spend_cap",
    "when": {
        "velocity": {"key": "range", "digits": 6, "window": "1d", "max": 0.35, "measure": "spend"}
    },
}
CONVERSION = {
    "name": "conversion",
    "mode": "shadow",
    "action": "deny",
    "reason": "low_conversion",
    "when": {"conversion": {"key": "number", "window": "1h", "min_attempts": 3, "below": 0.5}},
}


async def _install(sender: SinchSender, policy: Policy) -> None:
    runtime = sender.client.app.state.runtime  # type: ignore[attr-defined]
    await install_policy(runtime, policy)


def _number() -> str:
    # A fresh valid Swedish mobile per test: Redis keeps counters across tests.
    return f"+4670{random.randint(1_000_000, 9_999_999)}"


async def _burst(sender: SinchSender, number: str, count: int, **event: Any) -> Counter[str]:
    events = [samples.request_event(number=number, **event) for _ in range(count)]
    responses = await asyncio.gather(*(sender.post(e) for e in events))
    assert {r.status_code for r in responses} == {200}
    return Counter(r.json()["action"] for r in responses)


async def test_concurrent_burst_cannot_pass_a_number_limit(guard: SinchSender) -> None:
    await _install(guard, _policy(NUMBER_LIMIT))
    actions = await _burst(guard, _number(), 20)
    assert actions == Counter(allow=5, deny=15)


async def test_allowed_only_limit_holds_under_a_burst(guard: SinchSender) -> None:
    await _install(guard, _policy(ALLOWED_LIMIT))
    number = _number()
    assert await _burst(guard, number, 12) == Counter(allow=3, deny=9)
    # Denied attempts did not use the allowance: still nothing more is allowed.
    assert await _burst(guard, number, 2) == Counter(deny=2)


async def test_spend_cap_counts_prices_across_a_range(guard: SinchSender) -> None:
    await _install(guard, _policy(SPEND_LIMIT))
    prefix = f"+467{random.randint(100, 999)}"
    numbers = [f"{prefix}{random.randint(10_000, 99_999)}" for _ in range(8)]
    events = [samples.request_event(number=n, price=0.1) for n in numbers]
    responses = await asyncio.gather(*(guard.post(e) for e in events))
    assert Counter(r.json()["action"] for r in responses) == Counter(allow=3, deny=5)


async def test_redelivery_is_not_counted_twice(guard: SinchSender) -> None:
    await _install(guard, _policy(NUMBER_LIMIT))
    number = _number()
    event = samples.request_event(number=number)
    for _ in range(6):
        assert (await guard.post(event)).json()["action"] == "allow"
    assert await _burst(guard, number, 5) == Counter(allow=4, deny=1)


async def test_conversion_counts_successes_and_shows_in_the_trace(guard: SinchSender) -> None:
    await _install(guard, _policy(CONVERSION))
    number = _number()
    first = samples.request_event(number=number)
    await guard.post(first)
    await guard.post(samples.result_event(verification_id=first["id"], number=number))
    # A repeated SUCCESSFUL result must not be credited twice.
    await guard.post(
        samples.result_event(verification_id=first["id"], number=number, source="manual")
    )
    for _ in range(2):
        await guard.post(samples.request_event(number=number))
    runtime = guard.client.app.state.runtime  # type: ignore[attr-defined]
    probe = samples.request_event(number=number)
    await guard.post(probe)
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                select(VerificationRow.decision).where(VerificationRow.id == probe["id"])
            )
        ).scalar_one()
    assert row["aggregates"]["successes:number:3600"] == 1
    assert row["aggregates"]["attempts:number:3600"] == 4
    assert [m["rule"] for m in row["shadow"]] == ["conversion"], "1/4 = 0.25 < 0.5: would deny"
    text = " ".join(c["text"] for entry in row["trace"] for c in entry["conditions"])
    assert "1/4" in text


DENY_FLAGGED = {
    "name": "flagged",
    "priority": 1,
    "action": "deny",
    "reason": "flagged_reference",
    "when": {"field": "reference", "op": "eq", "value": "flagged"},
}


async def test_denied_attempts_do_not_use_an_allowed_only_allowance(guard: SinchSender) -> None:
    await _install(guard, _policy(DENY_FLAGGED, ALLOWED_LIMIT))
    number = _number()
    assert await _burst(guard, number, 5, reference="flagged") == Counter(deny=5)
    # Settled as denied, those five are not counted as allowed: three more are allowed.
    assert await _burst(guard, number, 3) == Counter(allow=3)
    assert await _burst(guard, number, 1) == Counter(deny=1)


COUNTRY_LIMIT = {
    "name": "country-velocity",
    "action": "deny",
    "reason": "country_velocity",
    "when": {"velocity": {"key": "country", "window": "1h", "max": 1000}},
}


@pytest.mark.parametrize("counters", ["sql"], indirect=True)  # reads the SQL counter rows
async def test_only_keys_of_allowed_only_limits_are_held_and_settled(guard: SinchSender) -> None:
    """A hot key (the country) is written once per attempt; the number, which an allowed-only
    limit reads, is held pending and settled."""
    await _install(guard, _policy(ALLOWED_LIMIT, COUNTRY_LIMIT))
    number = _number()
    assert await _burst(guard, number, 5) == Counter(allow=3, deny=2)
    runtime = guard.client.app.state.runtime  # type: ignore[attr-defined]
    totals: dict[str, Counter[str]] = {}
    async with runtime.engine.connect() as conn:
        # Summed over buckets: the burst may straddle a minute.
        for row in await conn.execute(
            select(CounterRow).where(CounterRow.key.in_([f"number:{number}", "country:SE"]))
        ):
            total = totals.setdefault(row.key, Counter())
            total.update(attempts=row.attempts, allowed=row.allowed, pending=row.pending)
    held, hot = totals[f"number:{number}"], totals["country:SE"]
    assert (held["attempts"], held["allowed"], held["pending"]) == (5, 3, 0)
    assert (hot["attempts"], hot["allowed"], hot["pending"]) == (5, 0, 0)


RANGE_LIMIT = {
    "name": "range-velocity",
    "action": "deny",
    "reason": "range_velocity",
    "when": {"velocity": {"key": "range", "digits": 7, "window": "1h", "max": 1000}},
}


@pytest.mark.parametrize("counters", ["sql"], indirect=True)  # reads the SQL counter rows
async def test_an_attempt_is_counted_only_under_the_current_policy(guard: SinchSender) -> None:
    """The counting statement counts only if the policy version is the one this worker
    compiled: after another worker changed the policy, the attempt is counted under the new
    policy's keys alone (nothing under the stale ones) and decided by the new policy."""
    number = _number()
    await _install(guard, _policy(NUMBER_LIMIT))
    assert await _burst(guard, number, 1) == Counter(allow=1)  # compiled and counted: v1
    # Changed behind the worker's back, as another process would: its cache still holds v1.
    await _install(guard, _policy(RANGE_LIMIT, {**NUMBER_LIMIT, "mode": "off"}))
    response = await guard.post(samples.request_event(number=number))
    assert response.json()["action"] == "allow"
    runtime = guard.client.app.state.runtime  # type: ignore[attr-defined]
    keys = [f"number:{number}", f"range7:{number[:8]}"]
    async with runtime.engine.connect() as conn:
        rows = {
            row.key: row.attempts
            for row in await conn.execute(select(CounterRow).where(CounterRow.key.in_(keys)))
        }
        stored = (
            await conn.execute(
                select(VerificationRow.decision).where(VerificationRow.number == number)
            )
        ).scalars()
        versions = sorted(document["policy_version"] for document in stored)
    assert rows == {keys[0]: 1, keys[1]: 1}
    assert versions[1] == versions[0] + 1


UNVERIFIED = {
    "name": "unverified",
    "action": "deny",
    "reason": "number_velocity",
    "when": {"velocity": {"key": "number", "window": "1h", "max": 2, "measure": "unverified"}},
}


async def test_unverified_attempts_stop_counting_when_they_verify(guard: SinchSender) -> None:
    """Attempts count until their SUCCESSFUL result arrives, however late, and only once."""
    await _install(guard, _policy(UNVERIFIED))
    number = _number()

    async def attempt() -> tuple[str, str]:
        event = samples.request_event(number=number)
        return event["id"], (await guard.post(event)).json()["action"]

    async def verified(ident: str, source: str = "intercepted") -> None:
        result = samples.result_event(verification_id=ident, number=number, source=source)
        assert (await guard.post(result)).status_code == 200

    (first, a1), (second, a2) = await attempt(), await attempt()
    assert (a1, a2) == ("allow", "allow")
    await verified(first)
    await verified(first, source="manual")  # a repeated success is not credited twice
    third, a3 = await attempt()
    assert a3 == "allow", "3 attempts, 1 verified: 2 unverified"
    assert (await attempt())[1] == "deny", "4 attempts, 1 verified: 3 unverified"
    await verified(second)  # late results move the count back
    await verified(third)
    assert (await attempt())[1] == "allow", "5 attempts, 3 verified: 2 unverified"


DEAD_DESTINATION = {
    "name": "dead-destination",
    "action": "deny",
    "reason": "low_conversion",
    "when": {
        "all": [
            {"velocity": {"key": "number", "window": "1h", "max": 1, "measure": "unverified"}},
            {"verified": {"key": "number", "window": "1d", "at_most": 0}},
        ]
    },
}


async def test_a_destination_that_never_verifies_is_stopped(guard: SinchSender) -> None:
    """Unverified attempts to a key with no success in a day are denied; one success lifts it."""
    await _install(guard, _policy(DEAD_DESTINATION))
    number = _number()
    first = samples.request_event(number=number)
    assert (await guard.post(first)).json()["action"] == "allow"
    assert (await guard.post(samples.request_event(number=number))).json()["action"] == "deny"
    result = samples.result_event(verification_id=first["id"], number=number)
    assert (await guard.post(result)).status_code == 200
    assert (await guard.post(samples.request_event(number=number))).json()["action"] == "allow"
