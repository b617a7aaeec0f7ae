"""Deciding without the database: the last compiled policy and in-process counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.rules.decision import Decision
from app.rules.engine import evaluate
from app.rules.facts import Facts
from app.services.aggregates import Aggregator
from app.services.baselines import BaselineCache
from app.services.policy.cache import PolicyCache
from app.settings import Settings
from app.store.memory_counters import MemoryCounters


@dataclass(kw_only=True, eq=False, slots=True)
class LocalDecider:
    """The rules engine as usual; velocity from what this process saw during the outage
    (`aggregator` counts in `counters`, which the outage clears when the database returns)."""

    settings: Settings
    policies: PolicyCache
    counters: MemoryCounters
    aggregator: Aggregator
    # The baselines last loaded while the database was up.
    baselines: BaselineCache = field(default_factory=BaselineCache)

    async def decide(self, facts: Facts) -> tuple[Decision, Facts]:
        """In `fallback` mode, or before any policy was loaded, the configured fallback."""
        policy = self.policies.loaded
        if policy is None or self.settings.outage_mode == "fallback":
            return Decision.fallback(self.settings.fallback_action), facts
        no_conn: Any = None
        counted = await self.aggregator.observe(no_conn, policy, facts)
        baselines = self.baselines.values(policy, facts)
        facts = facts.with_aggregates({**counted.values, **baselines})
        decision = evaluate(policy, facts)
        await counted.finish(no_conn, allowed=decision.action == "allow")
        return decision, facts
