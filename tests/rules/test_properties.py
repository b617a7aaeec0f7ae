"""Properties of `evaluate` over generated policies and facts (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.rules.engine import compile_policy, evaluate
from app.rules.facts import Facts
from app.rules.model import Policy

from .factories import make_facts

LEAVES = st.one_of(
    st.builds(
        lambda op, value: {"field": "country", "op": op, "value": value},
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(["SE", "GB", "US", "NG", "DE"]), max_size=3),
    ),
    st.builds(
        lambda op, value: {"field": "price_amount", "op": op, "value": value},
        st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne"]),
        st.sampled_from([0, 0.04, 0.1, 0.5, 1]),
    ),
    st.builds(lambda v: {"field": "valid", "op": "eq", "value": v}, st.booleans()),
    st.builds(lambda v: {"field": "reference", "op": "present", "value": v}, st.booleans()),
    st.builds(
        lambda v: {"field": "number", "op": "starts_with", "value": v},
        st.lists(st.sampled_from(["+46", "+4470", "+44", "+1"]), min_size=1, max_size=2),
    ),
    st.builds(
        lambda m: {"velocity": {"key": "number", "window": "1h", "max": m}},
        st.integers(0, 8),
    ),
    st.just({"in_list": "vip"}),
)
CONDITIONS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=6,
)
RULE = st.fixed_dictionaries(
    {
        "priority": st.integers(0, 4),
        "mode": st.sampled_from(["enforce", "shadow", "off"]),
        "action": st.sampled_from(["allow", "deny"]),
        "when": CONDITIONS,
    },
    optional={"scope": st.just({"methods": ["sms"]}) | st.just({"methods": ["flashcall"]})},
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules = draw(st.lists(RULE, max_size=6))
    documents = [rule | {"name": f"r{i}", "reason": f"reason_{i}"} for i, rule in enumerate(rules)]
    return Policy.model_validate(
        {
            "rules": documents,
            "lists": [{"name": "vip", "kind": "prefix", "entries": [{"value": "+4670"}]}],
            "default_action": draw(st.sampled_from(["allow", "deny"])),
        }
    )


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    aggregates = draw(st.dictionaries(st.just("attempts:number:3600"), st.integers(1, 10)))
    return make_facts(
        endpoint=draw(st.sampled_from(["+46701234567", "+447400123456", "+12015550123", "x"])),
        price_amount=draw(st.sampled_from([None, 0.0, 0.04, 0.5, 2.0])),
        reference=draw(st.sampled_from([None, "", "ref"])),
        method=draw(st.sampled_from(["sms", "flashcall"])),
        aggregates={key: float(value) for key, value in aggregates.items()},
    )


def without(policy: Policy, mode: str) -> Policy:
    document: dict[str, Any] = policy.model_dump()
    document["rules"] = [rule for rule in document["rules"] if rule["mode"] != mode]
    return Policy.model_validate(document)


def outcome(policy: Policy, subject: Facts) -> tuple[str, str, str | None]:
    decision = evaluate(compile_policy(policy), subject)
    return decision.action, decision.reason, decision.rule


@settings(max_examples=150, deadline=None)
@given(policies(), facts())
def test_shadow_rule_never_changes_answer(policy: Policy, subject: Facts) -> None:
    assert outcome(policy, subject) == outcome(without(policy, "shadow"), subject)


@settings(max_examples=150, deadline=None)
@given(policies(), facts())
def test_off_rules_never_match_or_appear(policy: Policy, subject: Facts) -> None:
    off = {rule.name for rule in policy.rules if rule.mode == "off"}
    decision = evaluate(compile_policy(policy), subject)
    named = {decision.rule} | {m.rule for m in decision.shadow} | {t.rule for t in decision.trace}
    assert not off & named
    assert decision == evaluate(compile_policy(without(policy, "off")), subject)


@settings(max_examples=100, deadline=None)
@given(policies(), facts())
def test_evaluation_is_deterministic(policy: Policy, subject: Facts) -> None:
    first = evaluate(compile_policy(policy, version=1), subject)
    second = evaluate(compile_policy(policy, version=1), subject)
    assert first == second
    assert first.model_dump(mode="json") == second.model_dump(mode="json")


@settings(max_examples=150, deadline=None)
@given(policies(), facts())
def test_deciding_rule_is_the_first_matching_enforce_rule(policy: Policy, subject: Facts) -> None:
    def matches_alone(name: str) -> bool:
        document: dict[str, Any] = policy.model_dump()
        document["rules"] = [rule for rule in document["rules"] if rule["name"] == name]
        return evaluate(compile_policy(Policy.model_validate(document)), subject).rule == name

    enforce = [rule for rule in policy.rules if rule.mode == "enforce"]
    matching = sorted((r.priority, r.name) for r in enforce if matches_alone(r.name))
    decision = evaluate(compile_policy(policy), subject)
    expected = matching[0][1] if matching else None
    assert decision.rule == expected
    if expected is None:
        assert (decision.action, decision.reason) == (policy.default_action, "default")


@settings(max_examples=100, deadline=None)
@given(policies(), facts())
def test_every_shadow_match_is_a_matching_shadow_rule(policy: Policy, subject: Facts) -> None:
    decision = evaluate(compile_policy(policy), subject)
    matched = {t.rule for t in decision.trace if t.matched and t.mode == "shadow"}
    assert [m.rule for m in decision.shadow] == [
        t.rule for t in decision.trace if t.rule in matched
    ]
    assert all(rule.mode == "shadow" for rule in policy.rules if rule.name in matched)
