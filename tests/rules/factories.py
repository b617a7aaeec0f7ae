"""Builders for rules-engine tests: facts for a Swedish mobile, rules from plain dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.rules.engine import CompiledPolicy, Decision, compile_policy, evaluate
from app.rules.facts import Facts, derive_facts
from app.rules.model import Policy, Rule

NOW = datetime(2024, 5, 6, 14, 2, tzinfo=UTC)  # a Monday
SE_MOBILE = "+46701234567"


def make_facts(**overrides: Any) -> Facts:
    """Facts for an SMS to a Swedish mobile; keyword overrides replace derived values."""
    base = derive_facts(
        method="sms",
        endpoint=overrides.pop("endpoint", SE_MOBILE),
        price_amount=0.04,
        price_currency="EUR",
        rate_amount=0.0,
        rate_currency="EUR",
        reference="signup-42",
        custom="user=42",
        application="app-key-1",
        now=NOW,
    )
    fields = {name: getattr(base, name) for name in Facts.__dataclass_fields__}
    return Facts(**(fields | overrides))


def make_rule(when: dict[str, Any], **fields: Any) -> Rule:
    document = {"name": "r1", "action": "deny", "reason": "test_reason", "when": when}
    return Rule.model_validate(document | fields)


def make_policy(*rules: Rule, **fields: Any) -> Policy:
    return Policy.model_validate({"rules": [r.model_dump() for r in rules]} | fields)


def decide(policy: Policy, facts: Facts) -> Decision:
    return evaluate(compile_policy(policy, version=1), facts)


def spec_ids(compiled: CompiledPolicy) -> list[str]:
    """The ids of the values a compiled policy reads from `Facts.aggregates`, sorted."""
    return sorted(
        [s.id for s in compiled.aggregates]
        + [b.id for b in compiled.baselines]
        + [h.id for h in compiled.histories]
    )
