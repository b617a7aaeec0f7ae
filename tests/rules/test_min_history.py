"""`min_history` on a `verified` condition: a key is judged "never verifies" only once its
first attempt in the window is old enough for results to have arrived."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.rules.engine import compile_policy
from app.rules.model import Rule

from .factories import NOW, decide, make_facts, make_policy, make_rule

FIRST = "first_seen:country:86400"
DEAD = {"verified": {"key": "country", "window": "1d", "at_most": 2, "min_history": "1m"}}


def _run(successes: float, age: float | None) -> tuple[str, str]:
    aggregates = {"successes:country:86400": successes}
    if age is not None:
        aggregates[FIRST] = NOW.timestamp() - age
    decision = decide(make_policy(make_rule(DEAD)), make_facts(aggregates=aggregates))
    return decision.action, decision.trace[0].conditions[0].text


@pytest.mark.parametrize(
    ("successes", "age", "action", "text"),
    [
        (
            0,
            75.4,
            "deny",
            "country verified 0 in 1d <= at most 2, first attempt 75s ago >= min_history 1m: true",
        ),
        (
            2,
            60,
            "deny",
            "country verified 2 in 1d <= at most 2, first attempt 60s ago >= min_history 1m: true",
        ),
        (
            3,
            3600,
            "allow",
            "country verified 3 in 1d <= at most 2, first attempt 3600s ago >= min_history 1m: "
            "false",
        ),
        (
            0,
            59.9,
            "allow",
            "country verified 0 in 1d <= at most 2, first attempt 59s ago < min_history 1m: false",
        ),
        (
            0,
            None,
            "allow",
            "country verified 0 in 1d <= at most 2, no earlier attempt < min_history 1m: false",
        ),
    ],
)
def test_a_key_is_judged_once_its_history_is_old_enough(
    successes: float, age: float | None, action: str, text: str
) -> None:
    assert _run(successes, age) == (action, text)


def test_a_first_attempt_in_the_future_counts_as_new() -> None:
    """Clocks of several workers differ: a first attempt after `now` is zero seconds old."""
    assert _run(0, -5)[0] == "allow"


def test_without_min_history_no_first_attempt_is_read() -> None:
    rule = make_rule({"verified": {"key": "country", "window": "1d", "at_most": 0}})
    assert compile_policy(make_policy(rule)).histories == frozenset()
    decision = decide(make_policy(rule), make_facts(aggregates={"successes:country:86400": 0}))
    assert decision.action == "deny"


def test_the_policy_asks_the_shell_for_first_attempts_per_key_and_window() -> None:
    compiled = compile_policy(make_policy(make_rule(DEAD)))
    assert [h.id for h in compiled.histories] == [FIRST]
    (history,) = compiled.histories
    assert history.key_value(make_facts()) == "country:SE"


def test_ranges_keep_their_width_in_the_history_id() -> None:
    when = {"verified": {"key": "range", "drop_last": 3, "window": "1h", "at_most": 0}}
    when["verified"] |= {"min_history": 90}
    compiled = compile_policy(make_policy(make_rule(when)))
    assert [h.id for h in compiled.histories] == ["first_seen:range-3:3600"]
    assert compiled.policy.rules[0].model_dump()["when"]["verified"]["min_history"] == "90s"


@pytest.mark.parametrize(
    ("min_history", "message"),
    [
        ("1d", "min_history must be shorter than the window"),
        ("soon", "invalid duration"),
        (1.5, "min_history is a duration"),
    ],
)
def test_min_history_is_validated(min_history: Any, message: str) -> None:
    when = {"verified": {"key": "country", "window": "1d", "at_most": 0}}
    when["verified"] |= {"min_history": min_history}
    rule: dict[str, Any] = {"name": "r", "action": "deny", "reason": "dead", "when": when}
    with pytest.raises(ValidationError, match=message):
        Rule.model_validate(rule)
