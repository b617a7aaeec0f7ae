"""A policy change under load: the request events in flight share one reload
(services/policy/cache.py), on every store and with the counters in Redis (the `guard`
fixture of tests/services/conftest.py), and each is decided under the new policy.

Before, each request event that found the version moved loaded and compiled the policy on
its own: with long lists, tens of seconds of the event loop after every edit.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from app.rules.model import Policy
from app.services.alerts.live import LivePolicy
from app.services.intake.redis_batches import RedisBatches
from app.sinch import samples
from tests.support import SinchSender, install_policy

BURST = 48
BLOCKED = [f"+4670{n:07d}" for n in range(2000)]  # a long-ish list, loaded with the policy


def _policy(*, block_sweden: bool) -> Policy:
    rules: list[dict[str, Any]] = [
        {
            "name": "blocklist",
            "action": "deny",
            "reason": "blocklisted",
            "when": {"in_list": "blocklist"},
        }
    ]
    if block_sweden:
        rules.append(
            {
                "name": "sweden-block",
                "action": "deny",
                "reason": "country_blocked",
                "when": {"field": "country", "op": "eq", "value": "SE"},
            }
        )
    entries = [{"value": number} for number in BLOCKED]
    lists = [{"name": "blocklist", "kind": "number", "entries": entries}]
    return Policy.model_validate({"rules": rules, "lists": lists, "default_action": "allow"})


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


def _loads(sender: SinchSender) -> float:
    registry = _runtime(sender).metrics.registry
    return float(registry.get_sample_value("verifyguard_policy_loads_total") or 0.0)


async def _burst(sender: SinchSender) -> list[str]:
    numbers = [f"+4673{random.randint(1_000_000, 9_999_999)}" for _ in range(BURST)]
    replies = await asyncio.gather(*(sender.post(samples.request_event(number=n)) for n in numbers))
    assert {reply.status_code for reply in replies} == {200}
    return [reply.json()["action"] for reply in replies]


async def test_a_burst_after_a_change_shares_one_load(guard: SinchSender) -> None:
    runtime = _runtime(guard)
    await install_policy(runtime, _policy(block_sweden=False))
    assert set(await _burst(guard)) == {"allow"}
    before = _loads(guard)

    await install_policy(runtime, _policy(block_sweden=True), now=datetime.now(UTC))
    assert set(await _burst(guard)) == {"deny"}  # every one under the new policy
    assert _loads(guard) - before == 1

    # The alert jobs read the same policy (alerts/live.py): no load of their own.
    live = LivePolicy(default_action="allow", policies=runtime.policies)
    async with runtime.engine.connect() as conn:
        assert await live.read(conn) is runtime.policies.loaded.policy
    assert _loads(guard) - before == 1
    blocked = await guard.post(samples.request_event(number=BLOCKED[7]))
    assert blocked.json()["action"] == "deny"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    "counters", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)
async def test_redis_mode_borrows_one_connection_for_a_change(guard: SinchSender) -> None:
    """With the counters in Redis, the request events that find the version kept there moved
    load the policy at that version together, on one connection; before, each borrowed one
    to read the version from PostgreSQL and held it while the load ran."""
    runtime = _runtime(guard)
    await install_policy(runtime, _policy(block_sweden=False))
    assert set(await _burst(guard)) == {"allow"}
    batches = runtime.intake._decider.scope
    assert isinstance(batches, RedisBatches)
    lend, lent = batches.lend, []

    def counted() -> Any:
        lent.append(1)
        return lend()

    batches.lend = counted  # the slow path's (the store batches hold their own)
    await install_policy(runtime, _policy(block_sweden=True))
    assert set(await _burst(guard)) == {"deny"}
    assert len(lent) == 1
