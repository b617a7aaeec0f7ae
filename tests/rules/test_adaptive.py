"""Adaptive limits: max(floor, factor x the key's verified baseline), an explicit input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.rules.engine import compile_policy, replay
from app.rules.facts import facts_to_json
from app.rules.model import Rule

from .factories import decide, make_facts, make_policy, make_rule

COUNTED = {"attempts:range-3:3600": 31.0, "successes:range-3:3600": 0.0}
BASELINE = "verified_in:range-3:1209600"


def _adaptive(**limit: Any) -> dict[str, Any]:
    spec = {"floor": 20, "factor": 0.2, "verified_in": "14d"} | limit
    return {
        "velocity": {
            "key": "range",
            "drop_last": 3,
            "window": "1h",
            "measure": "unverified",
            "limit": {k: v for k, v in spec.items() if v is not None},
        }
    }


def _text(aggregates: dict[str, float], **limit: Any) -> tuple[str, str]:
    decision = decide(make_policy(make_rule(_adaptive(**limit))), make_facts(aggregates=aggregates))
    return decision.action, decision.trace[0].conditions[0].text


def test_the_trace_shows_the_computed_limit_and_its_inputs() -> None:
    assert _text(COUNTED | {BASELINE: 120.0}) == (
        "deny",
        "range-3 unverified 31 in 1h > limit 24 = max(20, 0.2 \u00d7 120 verified in 14d): true",
    )


def test_a_key_with_a_verified_history_gets_room() -> None:
    assert _text(COUNTED | {BASELINE: 200.0}) == (
        "allow",
        "range-3 unverified 31 in 1h > limit 40 = max(20, 0.2 \u00d7 200 verified in 14d): false",
    )


def test_a_key_without_a_baseline_has_the_floor() -> None:
    assert _text(COUNTED) == (
        "deny",
        "range-3 unverified 31 in 1h > limit 20 = floor 20 (100 or fewer verified in 14d): true",
    )


def test_same_hour_of_the_last_days() -> None:
    baseline = "verified_same_hour:range-3:7"
    action, text = _text(COUNTED | {baseline: 200.0}, verified_in=None, same_hour_days=7)
    assert (action, text) == (
        "allow",
        "range-3 unverified 31 in 1h > limit 40 = max(20, 0.2 \u00d7 200 verified in this hour "
        "of the last 7 days): false",
    )


def test_the_compiled_policy_lists_each_baseline_with_its_lowest_threshold() -> None:
    low = make_rule(_adaptive(floor=5, factor=0.5), name="low")
    high = make_rule(_adaptive(), name="high")
    compiled = compile_policy(make_policy(low, high))
    assert {spec.id: above for spec, above in compiled.baselines.items()} == {BASELINE: 10.0}


def test_a_replay_with_the_stored_facts_decides_the_same() -> None:
    policy = make_policy(make_rule(_adaptive()))
    facts = make_facts(aggregates=COUNTED | {BASELINE: 150.0})
    first = decide(policy, facts)
    again = replay(compile_policy(policy, version=1), facts_to_json(facts))
    assert first.trace == again.trace
    assert first.action == again.action == "deny"


@pytest.mark.parametrize(
    ("limit", "error"),
    [
        ({"floor": 20, "factor": 0.2}, "verified_in or same_hour_days"),
        ({"floor": 20, "factor": 0.2, "verified_in": "14d", "same_hour_days": 7}, "not both"),
        ({"floor": -1, "factor": 0.2, "verified_in": "14d"}, "greater than or equal"),
        ({"floor": 1, "factor": 0, "verified_in": "14d"}, "greater than 0"),
    ],
)
def test_invalid_limits_are_rejected(limit: dict[str, Any], error: str) -> None:
    when = {"velocity": {"key": "number", "window": "1h", "limit": limit}}
    with pytest.raises(ValidationError, match=error):
        Rule.model_validate({"name": "r", "action": "deny", "reason": "rr", "when": when})


def test_a_velocity_takes_max_or_limit_not_both() -> None:
    limit = {"floor": 1, "factor": 1, "verified_in": "1d"}
    for velocity in ({"max": 3, "limit": limit}, {}):
        when = {"velocity": {"key": "number", "window": "1h"} | velocity}
        with pytest.raises(ValidationError, match=r"max .* or limit"):
            Rule.model_validate({"name": "r", "action": "deny", "reason": "rr", "when": when})


@given(
    verified=st.integers(min_value=0, max_value=100_000),
    more=st.integers(min_value=1, max_value=1_000),
    unverified=st.integers(min_value=0, max_value=10_000),
)
def test_more_verified_history_never_lowers_the_limit(
    verified: int, more: int, unverified: int
) -> None:
    counted = {"attempts:range-3:3600": float(unverified), "successes:range-3:3600": 0.0}
    before = decide(
        make_policy(make_rule(_adaptive())), make_facts(aggregates=counted | {BASELINE: verified})
    )
    after = decide(
        make_policy(make_rule(_adaptive())),
        make_facts(aggregates=counted | {BASELINE: verified + more}),
    )
    limit_before = before.trace[0].conditions[0].expected
    limit_after = after.trace[0].conditions[0].expected
    assert isinstance(limit_before, float) and isinstance(limit_after, float)
    assert limit_after >= limit_before >= 20
    assert not (before.action == "allow" and after.action == "deny")
