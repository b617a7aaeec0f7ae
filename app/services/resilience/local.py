"""Deciding without the database: the last compiled policy and in-process counters."""

from __future__ import annotations

from typing import Any

from app.rules.decision import Decision
from app.rules.engine import evaluate
from app.rules.facts import Facts
from app.services.aggregates import Aggregator
from app.services.policy.cache import PolicyCache
from app.settings import Settings
from app.store.memory_counters import MemoryCounters


class LocalDecider:
    """The rules engine as usual; velocity from what this process saw during the outage."""

    def __init__(
        self,
        *,
        settings: Settings,
        policies: PolicyCache,
        counters: MemoryCounters,
        aggregator: Aggregator,
    ) -> None:
        """`aggregator` counts in `counters`, which the outage clears when the database returns."""
        self._settings = settings
        self._policies = policies
        self.counters = counters
        self._aggregator = aggregator

    async def decide(self, facts: Facts) -> tuple[Decision, Facts]:
        """In `fallback` mode, or before any policy was loaded, the configured fallback."""
        policy = self._policies.loaded
        if policy is None or self._settings.outage_mode == "fallback":
            return Decision.fallback(self._settings.fallback_action), facts
        no_conn: Any = None
        counted = await self._aggregator.observe(no_conn, policy, facts)
        facts = facts.with_aggregates(counted.values)
        decision = evaluate(policy, facts)
        await counted.finish(no_conn, allowed=decision.action == "allow")
        return decision, facts
