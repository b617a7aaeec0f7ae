"""Dry-run a request event against the live or a candidate policy: decision, trace, answer.

Reads live aggregates without counting the attempt and stores nothing: no side effects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.engine import CompiledPolicy, compile_policy, evaluate
from app.rules.facts import facts_to_json
from app.rules.model import Policy
from app.services.aggregates import Aggregator
from app.services.intake.answers import build_answer
from app.services.intake.event_facts import event_facts
from app.services.policy.cache import PolicyCache
from app.settings import Settings
from app.sinch.events import VerificationRequestEvent


async def evaluate_event(
    conn: AsyncConnection,
    *,
    event: VerificationRequestEvent,
    candidate: Policy | None,
    application: str | None,
    now: datetime,
    policies: PolicyCache,
    aggregator: Aggregator,
    settings: Settings,
) -> dict[str, Any]:
    """The decision a real request event would get now, as the admin API shows it."""
    policy = await _policy(conn, candidate, policies, settings)
    facts = event_facts(event, application=application, now=now)
    facts = facts.with_aggregates(await aggregator.peek(conn, policy, facts))
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
