"""Dry-run a request event against the live or a candidate policy: decision, trace, answer.

Reads live aggregates without counting the attempt and stores nothing: no side effects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import ServiceUnavailable
from app.rules.aggregates import AggregateSpec
from app.rules.engine import CompiledPolicy, compile_policy, evaluate
from app.rules.facts import Facts, derive_facts, facts_to_json
from app.rules.model import Policy
from app.services.aggregates import CounterBackend
from app.services.answers import build_answer
from app.services.policy import PolicyCache
from app.settings import Settings
from app.sinch.events import VerificationRequestEvent
from app.store.counters import Measure, WindowQuery, to_micros

# The counter column each aggregate measure reads (as `Aggregator.observe` maps them).
_MEASURES: dict[str, Measure] = {
    "attempts": "attempts",
    "spend": "spend",
    "successes": "successes",
    "allowed_attempts": "allowed",
    "allowed_spend": "allowed_spend",
}


@runtime_checkable
class Peeking(Protocol):
    """A counter backend that reads windows as `observe` would, without counting."""

    async def peek(
        self,
        conn: AsyncConnection,
        *,
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
    ) -> dict[WindowQuery, float]: ...


async def evaluate_event(
    conn: AsyncConnection,
    *,
    event: VerificationRequestEvent,
    candidate: Policy | None,
    application: str | None,
    now: datetime,
    policies: PolicyCache,
    counters: CounterBackend,
    settings: Settings,
) -> dict[str, Any]:
    """The decision a real request event would get now, as the admin API shows it."""
    policy = await _policy(conn, candidate, policies, settings)
    facts = event_facts(event, application=application, now=now)
    facts = facts.with_aggregates(await peek_aggregates(conn, counters, policy, facts))
    decision = evaluate(policy, facts)
    answer = build_answer(method=event.method, decision=decision, defaults=settings.answers)
    return {
        **decision.model_dump(mode="json"),
        "answer": answer,
        "facts": facts_to_json(facts),
        "candidate": candidate is not None,
    }


async def _policy(
    conn: AsyncConnection, candidate: Policy | None, policies: PolicyCache, settings: Settings
) -> CompiledPolicy:
    if candidate is None:
        return await policies.current(conn)
    if "timezone" not in candidate.model_fields_set:
        candidate = candidate.model_copy(update={"timezone": settings.timezone})
    return compile_policy(candidate, version="candidate")


def event_facts(
    event: VerificationRequestEvent, *, application: str | None, now: datetime
) -> Facts:
    """Facts as the intake derives them for a request event from `application`."""
    price, rate = event.price, event.rate
    return derive_facts(
        method=event.method,
        endpoint=event.identity.endpoint,
        price_amount=price.amount if price else None,
        price_currency=price.currency_id if price else None,
        rate_amount=rate.amount if rate else None,
        rate_currency=rate.currency_id if rate else None,
        reference=event.reference,
        custom=event.custom,
        application=application,
        now=now,
    )


async def peek_aggregates(
    conn: AsyncConnection, counters: CounterBackend, policy: CompiledPolicy, facts: Facts
) -> dict[str, float]:
    """Aggregate values by spec id, as a real attempt would see them, counting nothing."""
    wanted = _queries(policy.aggregates, facts)
    if not wanted:
        return {}
    if not isinstance(counters, Peeking):
        raise ServiceUnavailable("the counter backend cannot be read without counting")
    values = await counters.peek(
        conn, queries=list(wanted), now=facts.now, spend_micros=to_micros(facts.price_amount)
    )
    return {spec.id: values[query] for query, specs in wanted.items() for spec in specs}


def _queries(
    specs: Iterable[AggregateSpec], facts: Facts
) -> dict[WindowQuery, list[AggregateSpec]]:
    wanted: dict[WindowQuery, list[AggregateSpec]] = {}
    for spec in specs:
        key = spec.key_value(facts)
        if key is not None:
            query = WindowQuery(key, spec.window_seconds, _MEASURES[spec.measure])
            wanted.setdefault(query, []).append(spec)
    return wanted
