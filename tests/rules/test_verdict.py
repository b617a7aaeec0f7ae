"""The trace-less `verdict` decides exactly what `evaluate` decides: the same action, the same
deciding rule, the same rules matched, over generated policies (every condition kind,
adaptive limits included) and generated aggregate values, present or missing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rules.engine import compile_policy, evaluate
from app.rules.model import Policy
from app.rules.verdict import of_decision, verdict

from .factories import make_facts
from .test_properties import LEAVES

KEYS = st.sampled_from(
    [{"key": "number"}, {"key": "country"}, {"key": "range", "drop_last": 3}, {"key": "reference"}]
)
MEASURES = st.sampled_from(["attempts", "spend", "unverified"])
AGGREGATE_LEAVES = st.one_of(
    st.builds(
        lambda key, measure, allowed, limit: {
            "velocity": {**key, "window": "1h", "measure": measure, "only_allowed": allowed}
            | (
                {"max": limit}
                if limit is not None
                else {"limit": {"floor": 2, "factor": 1, "verified_in": "14d"}}
            )
        },
        KEYS,
        MEASURES,
        st.booleans(),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    st.builds(
        lambda key, most: {"verified": {**key, "window": "1d", "at_most": most}},
        KEYS,
        st.integers(0, 2),
    ),
    st.builds(
        lambda key, below: {
            "conversion": {**key, "window": "24h", "min_attempts": 3, "below": below}
        },
        KEYS,
        st.sampled_from([0.1, 0.5, 0.9]),
    ),
)
CONDITIONS = st.recursive(
    st.one_of(AGGREGATE_LEAVES, LEAVES),
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
    optional={"scope": st.just({"methods": ["sms"]}) | st.just({"applications": ["other"]})},
)


def policy_of(rules: list[dict[str, Any]], default: str) -> Policy:
    documents = [rule | {"name": f"r{i}", "reason": f"reason_{i}"} for i, rule in enumerate(rules)]
    return Policy.model_validate(
        {
            "rules": documents,
            "lists": [{"name": "vip", "kind": "prefix", "entries": [{"value": "+4670"}]}],
            "default_action": default,
        }
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(RULE, max_size=6), st.sampled_from(["allow", "deny"]), st.data())
def test_verdict_agrees_with_the_traced_decision(
    rules: list[dict[str, Any]], default: str, data: st.DataObject
) -> None:
    compiled = compile_policy(policy_of(rules, default))
    ids = sorted({spec.id for spec in compiled.aggregates} | {b.id for b in compiled.baselines})
    values = st.one_of(st.none(), st.integers(0, 4).map(float))  # limits sit at 0-6
    drawn = data.draw(st.fixed_dictionaries({key: values for key in ids}))
    facts = make_facts(
        endpoint=data.draw(st.sampled_from(["+46701234567", "+447400123456", "x"])),
        price_amount=data.draw(st.sampled_from([None, 0.04, 0.5])),
        reference=data.draw(st.sampled_from([None, "ref"])),
        method=data.draw(st.sampled_from(["sms", "flashcall"])),
        aggregates={key: value for key, value in drawn.items() if value is not None},
    )
    decision = evaluate(compiled, facts)
    assert verdict(compiled, facts) == of_decision(decision)
    matched = [entry.rule for entry in decision.trace if entry.matched]
    assert verdict(compiled, facts).matched == tuple(matched)


BOUNDARY_CONDITIONS = [
    {"velocity": {"key": "number", "window": "1h", "max": 2}},
    {"velocity": {"key": "number", "window": "1h", "max": 2, "only_allowed": True}},
    {"velocity": {"key": "number", "window": "1h", "max": 2, "measure": "unverified"}},
    {
        "velocity": {
            "key": "range",
            "drop_last": 3,
            "window": "1h",
            "measure": "unverified",
            "only_allowed": True,
            "limit": {"floor": 2, "factor": 1, "verified_in": "14d"},
        }
    },
    {"verified": {"key": "country", "window": "1d", "at_most": 1}},
    {"conversion": {"key": "country", "window": "24h", "min_attempts": 2, "below": 0.5}},
]


@pytest.mark.parametrize("condition", BOUNDARY_CONDITIONS)
def test_verdict_agrees_at_every_boundary(condition: dict[str, Any]) -> None:
    """Every aggregate value from 0 to 4, present or missing, around limits of 1 and 2."""
    rules = [
        {"priority": 0, "mode": mode, "action": "deny", "when": condition}
        for mode in ("enforce", "shadow")
    ]
    compiled = compile_policy(policy_of(rules, "allow"))
    ids = sorted({spec.id for spec in compiled.aggregates} | {b.id for b in compiled.baselines})
    for values in itertools.product([None, 0.0, 1.0, 2.0, 3.0, 4.0], repeat=len(ids)):
        aggregates = {key: v for key, v in zip(ids, values, strict=True) if v is not None}
        facts = make_facts(aggregates=aggregates)
        assert verdict(compiled, facts) == of_decision(evaluate(compiled, facts)), aggregates
