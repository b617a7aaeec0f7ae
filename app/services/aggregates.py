"""Aggregates for the rules engine: which counters a policy needs, bumped and read per attempt.

The backend is SQL (inside the request's transaction) or Redis (atomic scripts); both
count this attempt before reading, so concurrent attempts see distinct totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
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
        keys: Iterable[str],
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
        hold_allowed: bool = False,
    ) -> dict[WindowQuery, float]: ...

    async def settle(
        self,
        conn: AsyncConnection,
        *,
        keys: Iterable[str],
        now: datetime,
        spend_micros: int,
        allowed: bool,
    ) -> None: ...

    async def record_success(
        self, conn: AsyncConnection, *, keys: Iterable[str], requested_at: datetime
    ) -> None: ...


class Aggregator:
    def __init__(self, backend: CounterBackend) -> None:
        self.backend = backend

    async def close(self) -> None:
        redis = getattr(self.backend, "redis", None)
        if redis is not None:
            await redis.aclose()

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
            hold_allowed=_counts_allowed(policy),
        )
        return {spec.id: values[q] for q, specs in wanted.items() for spec in specs}

    async def settle(
        self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts, *, allowed: bool
    ) -> None:
        """Tell allowed-only counters how the attempt was decided."""
        if _counts_allowed(policy):
            await self.backend.settle(
                conn,
                keys=_keys(policy, facts),
                now=facts.now,
                spend_micros=to_micros(facts.price_amount),
                allowed=allowed,
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


def _counts_allowed(policy: CompiledPolicy) -> bool:
    return any(spec.measure.startswith("allowed") for spec in policy.aggregates)


def _keys(policy: CompiledPolicy, facts: Facts) -> set[str]:
    return {k for k in (ck.value(facts) for ck in policy.counter_keys) if k is not None}
