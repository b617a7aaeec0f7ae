"""`measure: unverified`: a velocity of the attempts in the window not (yet) verified."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.rules.aggregates import specs_for
from app.rules.model import Rule

from .factories import decide, make_facts, make_policy, make_rule


def _unverified(max_: int, **extra: Any) -> dict[str, Any]:
    return {
        "velocity": {"key": "number", "window": "1h", "max": max_, "measure": "unverified"} | extra
    }


def _condition_text(aggregates: dict[str, float], **extra: Any) -> tuple[str, str]:
    decision = decide(
        make_policy(make_rule(_unverified(2, **extra))), make_facts(aggregates=aggregates)
    )
    return decision.action, decision.trace[0].conditions[0].text


def test_reads_attempts_and_successes_of_the_key_and_window() -> None:
    rule = Rule.model_validate(
        {"name": "r", "action": "deny", "reason": "unverified", "when": _unverified(2)}
    )
    assert sorted(spec.id for spec in specs_for(rule.when)) == [
        "attempts:number:3600",
        "successes:number:3600",
    ]


@pytest.mark.parametrize(
    ("attempts", "successes", "action", "shown"),
    [
        (3, 0, "deny", "number unverified 3 in 1h > max 2: true"),
        (3, 1, "allow", "number unverified 2 in 1h > max 2: false"),
        (5, 2, "deny", "number unverified 3 in 1h > max 2: true"),
    ],
)
def test_successes_stop_counting(attempts: int, successes: int, action: str, shown: str) -> None:
    got = _condition_text({"attempts:number:3600": attempts, "successes:number:3600": successes})
    assert got == (action, shown)


def test_only_allowed_counts_this_attempt_and_earlier_allowed_ones() -> None:
    aggregates = {"allowed_attempts:number:3600": 2, "successes:number:3600": 0}
    action, text = _condition_text(aggregates, only_allowed=True)
    assert (action, text) == ("deny", "number allowed unverified 3 in 1h > max 2: true")


def test_no_count_without_the_successes() -> None:
    action, text = _condition_text({"attempts:number:3600": 9})
    assert (action, text) == ("allow", "number unverified (no count) in 1h > max 2: false")


@given(
    attempts=st.integers(min_value=0, max_value=10_000),
    successes=st.integers(min_value=0, max_value=10_000),
    more=st.integers(min_value=1, max_value=100),
)
def test_a_verified_attempt_never_increases_the_count(
    attempts: int, successes: int, more: int
) -> None:
    successes = min(successes, attempts)
    before = _value({"attempts:number:3600": attempts, "successes:number:3600": successes})
    after = _value({"attempts:number:3600": attempts, "successes:number:3600": successes + more})
    assert after <= before


def _value(aggregates: dict[str, float]) -> float:
    decision = decide(make_policy(make_rule(_unverified(0))), make_facts(aggregates=aggregates))
    actual = decision.trace[0].conditions[0].actual
    assert isinstance(actual, float)
    return actual


VERIFIED = {"verified": {"key": "country", "window": "7d", "at_most": 0}}


@pytest.mark.parametrize(
    ("successes", "action", "shown"),
    [
        (0, "deny", "country verified 0 in 1w <= at most 0: true"),
        (1, "allow", "country verified 1 in 1w <= at most 0: false"),
    ],
)
def test_verified_at_most_catches_destinations_nobody_verifies(
    successes: int, action: str, shown: str
) -> None:
    facts = make_facts(aggregates={"successes:country:604800": successes})
    decision = decide(make_policy(make_rule(VERIFIED)), facts)
    assert (decision.action, decision.trace[0].conditions[0].text) == (action, shown)


def test_verified_without_a_count_is_false() -> None:
    decision = decide(make_policy(make_rule(VERIFIED)), make_facts())
    assert decision.action == "allow"
    assert decision.trace[0].conditions[0].text.endswith("(no count) in 1w <= at most 0: false")
