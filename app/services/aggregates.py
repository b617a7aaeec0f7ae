"""Aggregates for the rules engine: which counters a policy needs, bumped and read per attempt.

The backend is SQL (inside the request's transaction) or Redis (atomic scripts); both
count this attempt before reading, so concurrent attempts see distinct totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.aggregates import AggregateSpec
from app.rules.engine import CompiledPolicy
from app.rules.facts import Facts, derive_facts
from app.store.counters import Measure, WindowQuery, to_micros

_MEASURES: dict[str, Measure] = {
    "attempts": "attempts",
    "spend": "spend",
    "successes": "successes",
    "allowed_attempts": "allowed",
    "allowed_spend": "allowed_spend",
}


class CounterBackend(Protocol):
    async def observe(
        self,
        conn: AsyncConnection,
        *,
        keys: Any,
        queries: Any,
        now: Any,
        spend_micros: int,
    ) -> dict[WindowQuery, float]: ...

    async def record_allowed(
        self, conn: AsyncConnection, *, keys: Any, now: Any, spend_micros: int
    ) -> None: ...

    async def record_success(
        self, conn: AsyncConnection, *, keys: Any, requested_at: Any
    ) -> None: ...


class Aggregator:
    def __init__(self, backend: CounterBackend) -> None:
        self.backend = backend

    async def observe(
        self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts
    ) -> dict[str, float]:
        """Count this attempt under the policy's counter keys; return values by spec id."""
        if not policy.aggregates:
            return {}
        keys = _keys(policy, facts)
        wanted: dict[WindowQuery, list[AggregateSpec]] = {}
        for spec in policy.aggregates:
            key = spec.key_value(facts)
            if key is not None:
                query = WindowQuery(key, spec.window_seconds, _MEASURES[spec.measure])
                wanted.setdefault(query, []).append(spec)
        values = await self.backend.observe(
            conn,
            keys=keys,
            queries=list(wanted),
            now=facts.now,
            spend_micros=to_micros(facts.price_amount),
        )
        return {spec.id: values[q] for q, specs in wanted.items() for spec in specs}

    async def allowed(self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts) -> None:
        if any(spec.measure.startswith("allowed") for spec in policy.aggregates):
            await self.backend.record_allowed(
                conn,
                keys=_keys(policy, facts),
                now=facts.now,
                spend_micros=to_micros(facts.price_amount),
            )

    async def succeeded(
        self, conn: AsyncConnection, policy: CompiledPolicy, verification: Mapping[str, Any]
    ) -> None:
        """Credit a success to the counters of the attempt it belongs to."""
        if not any(spec.measure == "successes" for spec in policy.aggregates):
            return
        facts = derive_facts(
            method=verification["method"] or "",
            endpoint=verification["number"] or "",
            price_amount=None,
            price_currency=None,
            rate_amount=None,
            rate_currency=None,
            reference=verification["reference"],
            custom=None,
            application=verification["app_key"],
            now=verification["requested_at"],
        )
        await self.backend.record_success(
            conn, keys=_keys(policy, facts), requested_at=verification["requested_at"]
        )


def _keys(policy: CompiledPolicy, facts: Facts) -> set[str]:
    return {k for k in (ck.value(facts) for ck in policy.counter_keys) if k is not None}
