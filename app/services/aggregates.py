"""Aggregates for the rules engine: which counters a policy needs, bumped and read per attempt.

The backend is SQL (autocommit statements, one tiny transaction each) or Redis (atomic
scripts); both count this attempt before reading, so concurrent attempts see distinct
totals. Attempts still being decided count as allowed until settled.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypedDict

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.aggregates import AggregateSpec
from app.rules.engine import CompiledPolicy
from app.rules.facts import Facts, derive_facts
from app.services.policy.cache import PolicyCache
from app.store.buckets import CounterDeltas, Measure, WindowQuery, to_micros
from app.store.held import HeldConnections

_MEASURES: dict[str, Measure] = {
    "attempts": "attempts",
    "spend": "spend",
    "successes": "successes",
    "allowed_attempts": "allowed",
    "allowed_spend": "allowed_spend",
}


_ALLOWED = frozenset({"allowed_attempts", "allowed_spend"})

Counting = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
"""Opens the connection counters run on (autocommit on PostgreSQL, a transaction on SQLite)."""


def counting_scope(engine: AsyncEngine, held: HeldConnections | None) -> Counting:
    """On PostgreSQL the held autocommit connections, lent in arrival order; on SQLite a
    transaction of the one engine."""
    return engine.begin if held is None else held.lend


class CounterBackend(Protocol):
    async def observe(
        self,
        conn: AsyncConnection,
        *,
        keys: Iterable[str],
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> dict[WindowQuery, float]: ...

    async def forget(
        self,
        conn: AsyncConnection,
        *,
        keys: Iterable[str],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> None: ...

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

    async def peek(
        self,
        conn: AsyncConnection,
        *,
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
    ) -> dict[WindowQuery, float]: ...


class Aggregator:
    """Maps a compiled policy's aggregate specs onto counter keys; `conn` is AUTOCOMMIT."""

    def __init__(self, backend: CounterBackend) -> None:
        self.backend = backend
        # SQL counters can count only if the policy is still current (see observe_live).
        self._if_current = getattr(backend, "observe_if_current", None)

    async def start(self) -> None:
        """Let the backend prepare what it keeps (Redis: where its hour totals start)."""
        start = getattr(self.backend, "start", None)
        if start is not None:
            await start()

    async def close(self) -> None:
        redis = getattr(self.backend, "redis", None)
        if redis is not None:
            await redis.aclose()

    async def observe(
        self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts
    ) -> dict[str, float]:
        """Count this attempt under the policy's counter keys; return values by spec id.

        Allowed-only values exclude this attempt: the engine adds it when comparing.
        """
        if not policy.aggregates:
            return {}
        wanted, attempt = _attempt(policy, facts)
        values = await self.backend.observe(conn, **attempt)
        return _by_spec(wanted, values, attempt["spend_micros"])

    async def observe_live(
        self, conn: AsyncConnection, policies: PolicyCache, facts: Facts
    ) -> tuple[CompiledPolicy, dict[str, float]]:
        """`observe` under the live policy: that policy and the values.

        With SQL counters the attempt is counted under the policy compiled last only if that
        is still the current version, read by the counting statement itself (on PostgreSQL a
        request saves a round trip); after a change, the policy is reloaded and counted under.
        """
        cached, if_current = policies.loaded, self._if_current
        if cached is not None and isinstance(cached.version, int) and if_current is not None:
            wanted, attempt = _attempt(cached, facts)
            values = await if_current(conn, version=cached.version, **attempt)
            if values is not None:
                return cached, _by_spec(wanted, values, attempt["spend_micros"])
        policy = await policies.current(conn)
        return policy, await self.observe(conn, policy, facts)

    async def peek(
        self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts
    ) -> dict[str, float]:
        """What `observe` would return, counting nothing (for dry runs)."""
        wanted = _wanted(policy, facts)
        if not wanted:
            return {}
        values = await self.backend.peek(
            conn, queries=list(wanted), now=facts.now, spend_micros=to_micros(facts.price_amount)
        )
        return {spec.id: values[q] for q, specs in wanted.items() for spec in specs}

    async def forget(self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts) -> None:
        """Undo `observe` for a redelivered attempt."""
        if policy.aggregates:
            await self.backend.forget(
                conn,
                keys=_keys(policy, facts),
                now=facts.now,
                spend_micros=to_micros(facts.price_amount),
                held=_held(policy, facts),
            )

    async def settle(
        self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts, *, allowed: bool
    ) -> None:
        """Tell allowed-only counters how the attempt was decided."""
        held = _held(policy, facts)
        if held:
            await self.backend.settle(
                conn,
                keys=held,
                now=facts.now,
                spend_micros=to_micros(facts.price_amount),
                allowed=allowed,
            )

    def settled_in_store(
        self, policy: CompiledPolicy, facts: Facts, *, allowed: bool
    ) -> CounterDeltas | None:
        """The settle as deltas the store statement applies itself, when the counters live in
        the same (SQL) database and the attempt is held under some key; else None."""
        settled = getattr(self.backend, "settled", None)
        held = _held(policy, facts)
        if settled is None or not held:
            return None
        deltas: CounterDeltas = settled(
            keys=held, now=facts.now, spend_micros=to_micros(facts.price_amount), allowed=allowed
        )
        return deltas

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


def _wanted(policy: CompiledPolicy, facts: Facts) -> dict[WindowQuery, list[AggregateSpec]]:
    """The window each of the policy's aggregates reads for this attempt."""
    wanted: dict[WindowQuery, list[AggregateSpec]] = {}
    for spec in policy.aggregates:
        key = spec.key_value(facts)
        if key is not None:
            query = WindowQuery(key, spec.window_seconds, _MEASURES[spec.measure])
            wanted.setdefault(query, []).append(spec)
    return wanted


class _Attempt(TypedDict):
    """What a counter backend's observe is told about one attempt."""

    keys: set[str]
    queries: list[WindowQuery]
    now: datetime
    spend_micros: int
    held: set[str]


def _attempt(
    policy: CompiledPolicy, facts: Facts
) -> tuple[dict[WindowQuery, list[AggregateSpec]], _Attempt]:
    """The windows the policy's aggregates read for this attempt, and observe's arguments."""
    wanted = _wanted(policy, facts)
    attempt = _Attempt(
        keys=_keys(policy, facts),
        queries=list(wanted),
        now=facts.now,
        spend_micros=to_micros(facts.price_amount),
        held=_held(policy, facts),
    )
    return wanted, attempt


def _by_spec(
    wanted: Mapping[WindowQuery, list[AggregateSpec]],
    values: Mapping[WindowQuery, float],
    spend_micros: int,
) -> dict[str, float]:
    """Values by spec id; allowed-only ones without this attempt (the engine adds it)."""
    own = {"allowed": 1.0, "allowed_spend": spend_micros / 1_000_000}
    return {
        spec.id: values[q] - own.get(q.measure, 0.0)
        for q, specs in wanted.items()
        for spec in specs
    }


def counts_allowed(policy: CompiledPolicy) -> bool:
    return any(spec.measure in _ALLOWED for spec in policy.aggregates)


def _held(policy: CompiledPolicy, facts: Facts) -> set[str]:
    """The keys an attempt is held pending under until decided: those an allowed-only
    aggregate reads. Other keys never need settling (and a hot key is not written twice)."""
    held = (spec.key_value(facts) for spec in policy.aggregates if spec.measure in _ALLOWED)
    return {key for key in held if key is not None}


def _keys(policy: CompiledPolicy, facts: Facts) -> set[str]:
    return {k for k in (ck.value(facts) for ck in policy.counter_keys) if k is not None}
