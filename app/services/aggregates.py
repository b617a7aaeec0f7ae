"""Aggregates for the rules engine: a policy's specs mapped onto the counter model.

`observe` counts an attempt under the policy's counter keys and reads the windows its
specs need (a `Counted`); `Counted` then decides, in one place, every later effect the
attempt has on the counters: the settle once decided (applied by the decision's own store
statement where the counters live in the same database), or taking the count back when the
event turns out to be a redelivery. The meaning of each change is in store/counter_model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.aggregates import AggregateSpec, CounterKey
from app.rules.engine import CompiledPolicy
from app.rules.facts import Facts, derive_facts
from app.services.policy.cache import PolicyCache
from app.store.counter_model import (
    Attempt,
    BucketClock,
    Changes,
    CounterBackend,
    CounterDeltas,
    Measure,
    Reads,
    Totals,
    WindowQuery,
    decided_value,
    peeked,
    succeeded,
    to_micros,
)
from app.store.held import HeldConnections

_MEASURES: dict[str, Measure] = {
    "attempts": "attempts",
    "spend": "spend",
    "successes": "successes",
    "allowed_attempts": "allowed",
    "allowed_spend": "allowed_spend",
}
_ALLOWED_ONLY = frozenset({"allowed_attempts", "allowed_spend"})

Counting = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
"""Opens the connection counters run on (autocommit on PostgreSQL, a transaction on SQLite)."""

Wanted = Mapping[WindowQuery, Sequence[AggregateSpec]]
CountThrough = Callable[[Changes, Reads, int], Awaitable[Totals | None]]
"""Counts an attempt's changes and reads its windows if the policy is still at the version
given (None if it is not): a batch of them in one statement (store/pg_batch_count.py)."""


def counting_scope(engine: AsyncEngine, held: HeldConnections | None) -> Counting:
    """On PostgreSQL the held autocommit connections, lent in arrival order; on SQLite a
    transaction of the one engine."""
    return engine.begin if held is None else held.lend


class Counted:
    """One attempt, counted: the values its policy read, and what is left to do."""

    __slots__ = ("_backend", "_joined", "attempt", "policy", "values")

    def __init__(
        self,
        backend: CounterBackend,
        policy: CompiledPolicy,
        attempt: Attempt,
        values: dict[str, float],
    ) -> None:
        self._backend = backend
        self.policy = policy
        self.attempt = attempt
        self.values = values
        self._joined = False

    def settle_in_store(self, *, allowed: bool) -> CounterDeltas | None:
        """The settle, for the decision's store statement to apply itself if it claims the
        event; None where the counters live elsewhere or the settle writes nothing (held
        nowhere, or allowed: its hold is its allowed count already)."""
        if not self._backend.capabilities.joins_store:
            return None
        self._joined = True
        return self.attempt.settled(allowed=allowed)

    def finishes(self, *, allowed: bool, duplicate: bool) -> bool:
        """Whether `finish` has anything to write (after `settle_in_store`)."""
        if duplicate:
            return bool(self.attempt.keys)
        return self.settles(allowed=allowed)

    def settles(self, *, allowed: bool) -> bool:
        """Whether settling it (not a redelivery) writes anything: not where the store
        statement did it, nor where it writes nothing (held nowhere, or allowed)."""
        return not self._joined and self.attempt.settled(allowed=allowed) is not None

    async def finish(self, conn: Any, *, allowed: bool, duplicate: bool = False) -> None:
        """After the decision is stored: a redelivery takes its count (and hold) back;
        otherwise a denied attempt's hold is taken back, unless the store statement did it."""
        if duplicate:
            changes = self.attempt.forgotten()
        elif not self.settles(allowed=allowed):
            return
        else:
            settle = self.attempt.settled(allowed=allowed)
            changes = (settle,) if settle is not None else ()
        if changes:
            await self._backend.apply(conn, changes)


class Aggregator:
    """Maps a compiled policy's aggregate specs onto counter keys and windows."""

    def __init__(self, backend: CounterBackend) -> None:
        self.backend = backend

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    async def observe(self, conn: Any, policy: CompiledPolicy, facts: Facts) -> Counted:
        """Count this attempt under the policy's counter keys and read its windows."""
        wanted, attempt = self._attempt(policy, facts)
        if not policy.aggregates:
            return Counted(self.backend, policy, attempt, {})
        raw = await self.backend.observe(conn, attempt.counted(), Reads(list(wanted), facts.now))
        assert raw is not None  # no version to check: always counted
        return Counted(self.backend, policy, attempt, spec_values(wanted, raw, attempt))

    async def observe_live(
        self,
        conn: AsyncConnection,
        policies: PolicyCache,
        facts: Facts,
        *,
        version: int | None = None,
    ) -> Counted:
        """`observe` under the live policy.

        `version`, when given, is the live version as the caller's transaction read it: the
        policy compiled last is counted under if it is that one. Otherwise, where the
        counters live beside the policy, only if that is still the current version, read
        by the counting statement itself (on PostgreSQL a request saves a round trip).
        After a change, the policy is reloaded and counted under.
        """
        cached = policies.loaded
        if cached is not None and isinstance(cached.version, int):
            checks = self.backend.capabilities.checks_policy_version
            if version == cached.version or (version is None and checks):
                wanted, attempt = self._attempt(cached, facts)
                reads = Reads(list(wanted), facts.now)
                check = cached.version if version is None else None  # None: known live
                raw = await self.backend.observe(conn, attempt.counted(), reads, version=check)
                if raw is not None:
                    values = spec_values(wanted, raw, attempt)
                    return Counted(self.backend, cached, attempt, values)
        policy = await policies.current(conn, version=version)
        return await self.observe(conn, policy, facts)

    async def observe_through(
        self, count: CountThrough, policies: PolicyCache, facts: Facts
    ) -> Counted | None:
        """`observe_live`'s usual case through `count`: under the policy compiled last, if
        that is still the live one. None: no policy is loaded, or it moved on (the caller
        takes `observe_live` on a connection of its own, which reloads it)."""
        cached = policies.loaded
        if cached is None or not isinstance(cached.version, int):
            return None
        wanted, attempt = self._attempt(cached, facts)
        raw = await count(attempt.counted(), Reads(list(wanted), facts.now), cached.version)
        if raw is None:
            return None
        return Counted(self.backend, cached, attempt, spec_values(wanted, raw, attempt))

    async def peek(
        self, conn: AsyncConnection, policy: CompiledPolicy, facts: Facts
    ) -> dict[str, float]:
        """What `observe` would read, counting nothing (for dry runs)."""
        wanted = _wanted(policy, facts)
        if not wanted:
            return {}
        raw = await self.backend.read(conn, Reads(list(wanted), facts.now))
        spend = to_micros(facts.price_amount)
        return {spec.id: peeked(q, raw[q], spend) for q, specs in wanted.items() for spec in specs}

    async def succeeded(
        self, conn: AsyncConnection, policy: CompiledPolicy, verification: Mapping[str, Any]
    ) -> None:
        """Credit a success to the counters of the attempt it belongs to."""
        await self.succeeded_many(conn, policy, [verification])

    async def succeeded_many(
        self,
        conn: AsyncConnection,
        policy: CompiledPolicy,
        verifications: Sequence[Mapping[str, Any]],
    ) -> None:
        """Credit successes, each to the counters of its attempt (one statement on SQL)."""
        if not any(spec.measure == "successes" for spec in policy.aggregates):
            return
        changes = [self._success(policy, v) for v in verifications]
        if changes:
            await self.backend.apply(conn, changes)

    def _success(self, policy: CompiledPolicy, verification: Mapping[str, Any]) -> CounterDeltas:
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
        return succeeded(_keys(policy, facts), clock=self.backend.clock, requested_at=facts.now)

    def _attempt(self, policy: CompiledPolicy, facts: Facts) -> tuple[Wanted, Attempt]:
        return plan(policy, facts, self.backend.clock)


def plan(policy: CompiledPolicy, facts: Facts, clock: BucketClock) -> tuple[Wanted, Attempt]:
    """The windows the policy's aggregates read for this attempt, and the attempt as counted
    (what `observe` does, for a caller counting in memory itself: a backtest's replay).

    Each counter key is spelled once per attempt, not once per aggregate reading it
    (what `_wanted` and `_keys` give, and the keys an allowed-only aggregate reads, where
    the attempt is held pending until decided). Which windows are read, by which aggregates,
    depends only on which counter keys have a value: worked out once per such shape
    (`_Layout.shape`), so an attempt only spells its keys into it."""
    layout = _layout(policy)
    values: list[Any] = [counter.value(facts) for counter in layout.counters]
    if None in values:
        shape = layout.shape(tuple(key is not None for key in values))
    else:  # the usual case: every counter key has a value
        shape = layout.full
    wanted: Wanted = {WindowQuery(values[i], w, m): specs for i, w, m, specs in shape.reads}
    keys = set(values)
    keys.discard(None)
    held = {values[i] for i in shape.held}
    spend = to_micros(facts.price_amount)
    return wanted, Attempt.of(keys, held, clock=clock, now=facts.now, spend=spend)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a layout's aggregates read when some of its counter keys have a value: per
    distinct (counter key's index, window, measure), in the policy's order, the aggregates
    reading it; and the counter keys an allowed-only aggregate reads (held under)."""

    reads: tuple[tuple[int, int, Measure, tuple[AggregateSpec, ...]], ...]
    held: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Layout:
    """A compiled policy's aggregates as `plan` walks them: its distinct counter keys, and
    per aggregate (in the policy's order) its counter key's index, window, measure read,
    and whether it holds the attempt pending; and the shapes worked out so far."""

    counters: tuple[CounterKey, ...]
    specs: tuple[tuple[AggregateSpec, int, int, Measure, bool], ...]
    full: _Shape = field(init=False)
    """The shape when every counter key has a value."""
    shapes: dict[tuple[bool, ...], _Shape] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "full", self.shape((True,) * len(self.counters)))

    def shape(self, present: tuple[bool, ...]) -> _Shape:
        """The shape when the counter keys `present` have a value (worked out once).
        Distinct counter keys never spell the same key (each spells its own name first), so
        grouping the reads by counter key is grouping them by the key spelled."""
        found = self.shapes.get(present)
        if found is not None:
            return found
        reads: dict[tuple[int, int, Measure], list[AggregateSpec]] = {}
        held: set[int] = set()
        for spec, index, window, measure, pending in self.specs:
            if present[index]:
                reads.setdefault((index, window, measure), []).append(spec)
                if pending:
                    held.add(index)
        found = _Shape(
            tuple((*read, tuple(specs)) for read, specs in reads.items()), frozenset(held)
        )
        self.shapes[present] = found
        return found


_LAYOUTS: dict[int, tuple[CompiledPolicy, _Layout]] = {}


def _layout(policy: CompiledPolicy) -> _Layout:
    """`policy`'s layout, worked out once per compiled policy (kept for the last few)."""
    found = _LAYOUTS.get(id(policy))
    if found is not None and found[0] is policy:
        return found[1]
    counters = tuple(policy.counter_keys)
    index = {counter: i for i, counter in enumerate(counters)}
    specs = tuple(
        (
            spec,
            index[spec.counter_key],
            spec.window_seconds,
            _MEASURES[spec.measure],
            holds_pending(spec),
        )
        for spec in policy.aggregates
    )
    if len(_LAYOUTS) >= 8:
        _LAYOUTS.clear()
    layout = _Layout(counters, specs)
    _LAYOUTS[id(policy)] = (policy, layout)
    return layout


def window_query(spec: AggregateSpec, key: str) -> WindowQuery:
    """The window `spec` reads under the counter key `key`."""
    return WindowQuery(key, spec.window_seconds, _MEASURES[spec.measure])


def holds_pending(spec: AggregateSpec) -> bool:
    """Whether an attempt is held pending under the key `spec` reads (allowed-only)."""
    return spec.measure in _ALLOWED_ONLY


def _wanted(policy: CompiledPolicy, facts: Facts) -> Wanted:
    """The window each of the policy's aggregates reads for this attempt."""
    wanted: dict[WindowQuery, list[AggregateSpec]] = {}
    for spec in policy.aggregates:
        key = spec.key_value(facts)
        if key is not None:
            wanted.setdefault(window_query(spec, key), []).append(spec)
    return wanted


def spec_values(
    wanted: Wanted, raw: Mapping[WindowQuery, int], attempt: Attempt
) -> dict[str, float]:
    """Values by spec id; allowed-only ones without this attempt (the engine adds it)."""
    spend = attempt.spend_micros
    out: dict[str, float] = {}
    for q, specs in wanted.items():
        read = decided_value(q, raw[q], spend)
        for spec in specs:
            out[spec.id] = read
    return out


def _keys(policy: CompiledPolicy, facts: Facts) -> set[str]:
    return {k for k in (ck.value(facts) for ck in policy.counter_keys) if k is not None}
