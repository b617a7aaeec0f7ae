"""Every field operator: holds, fails, and a missing fact (always false except `present`)."""

from __future__ import annotations

from typing import Any

import pytest

from app.rules.model import Rule

from .factories import decide, make_facts, make_policy, make_rule


def holds(when: dict[str, Any], **fact_overrides: Any) -> bool:
    rule = make_rule(when)
    return decide(make_policy(rule), make_facts(**fact_overrides)).rule == "r1"


CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("eq holds", {"field": "country", "op": "eq", "value": "se"}, {}, True),
    ("eq fails", {"field": "country", "op": "eq", "value": "NO"}, {}, False),
    ("eq missing", {"field": "country", "op": "eq", "value": "SE"}, {"country": None}, False),
    ("ne holds", {"field": "method", "op": "ne", "value": "flashCall"}, {}, True),
    ("ne fails", {"field": "method", "op": "ne", "value": "SMS"}, {}, False),
    ("ne missing", {"field": "reference", "op": "ne", "value": "x"}, {"reference": None}, False),
    ("in holds", {"field": "country", "op": "in", "value": ["ru", "SE"]}, {}, True),
    ("in fails", {"field": "country", "op": "in", "value": ["RU", "NG"]}, {}, False),
    ("in missing", {"field": "country", "op": "in", "value": ["SE"]}, {"country": None}, False),
    ("not_in holds", {"field": "calling_code", "op": "not_in", "value": [7, 234]}, {}, True),
    ("not_in fails", {"field": "calling_code", "op": "not_in", "value": [46]}, {}, False),
    (
        "not_in missing",
        {"field": "calling_code", "op": "not_in", "value": [7]},
        {"calling_code": None},
        False,
    ),
    ("starts_with holds", {"field": "number", "op": "starts_with", "value": ["+4670"]}, {}, True),
    ("starts_with fails", {"field": "number", "op": "starts_with", "value": ["+44"]}, {}, False),
    (
        "starts_with missing",
        {"field": "number", "op": "starts_with", "value": ["+46"]},
        {"number": None},
        False,
    ),
    ("regex searches", {"field": "reference", "op": "regex", "value": "up-\\d+"}, {}, True),
    ("regex anchored fails", {"field": "reference", "op": "regex", "value": "^up"}, {}, False),
    (
        "regex missing",
        {"field": "custom", "op": "regex", "value": ".*"},
        {"custom": None},
        False,
    ),
    ("lt holds", {"field": "price_amount", "op": "lt", "value": 0.05}, {}, True),
    ("lt fails", {"field": "price_amount", "op": "lt", "value": 0.04}, {}, False),
    ("le holds at equal", {"field": "price_amount", "op": "le", "value": 0.04}, {}, True),
    ("le fails", {"field": "price_amount", "op": "le", "value": 0.01}, {}, False),
    ("gt holds", {"field": "price_amount", "op": "gt", "value": 0.01}, {}, True),
    ("gt fails at equal", {"field": "price_amount", "op": "gt", "value": 0.04}, {}, False),
    (
        "gt missing",
        {"field": "price_amount", "op": "gt", "value": 0},
        {"price_amount": None},
        False,
    ),
    ("ge holds at equal", {"field": "rate_amount", "op": "ge", "value": 0}, {}, True),
    ("ge fails", {"field": "rate_amount", "op": "ge", "value": 1}, {}, False),
    ("ge missing", {"field": "rate_amount", "op": "ge", "value": 0}, {"rate_amount": None}, False),
    ("present holds", {"field": "reference", "op": "present", "value": True}, {}, True),
    ("present fails", {"field": "reference", "op": "present", "value": False}, {}, False),
    (
        "absent holds when missing",
        {"field": "reference", "op": "present", "value": False},
        {"reference": None},
        True,
    ),
    ("empty is absent", {"field": "custom", "op": "present", "value": True}, {"custom": ""}, False),
    ("bool eq", {"field": "valid", "op": "eq", "value": True}, {}, True),
    ("currency upper-cased", {"field": "price_currency", "op": "eq", "value": "eur"}, {}, True),
    ("application lowered", {"field": "application", "op": "eq", "value": "APP-KEY-1"}, {}, True),
    ("number_type", {"field": "number_type", "op": "eq", "value": "mobile"}, {}, True),
    ("local_hour in UTC", {"field": "local_hour", "op": "eq", "value": 14}, {}, True),
    ("weekday", {"field": "weekday", "op": "in", "value": ["Mon", "tue"]}, {}, True),
    ("weekday fails", {"field": "weekday", "op": "eq", "value": "sun"}, {}, False),
]


@pytest.mark.parametrize(
    ("when", "overrides", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_field_operator(when: dict[str, Any], overrides: dict[str, Any], expected: bool) -> None:
    assert holds(when, **overrides) is expected


def test_local_time_uses_the_policy_timezone() -> None:
    rule = make_rule({"field": "local_hour", "op": "eq", "value": 16})
    policy = make_policy(rule, timezone="Europe/Stockholm")  # 14:02 UTC is 16:02 CEST
    assert decide(policy, make_facts()).rule == "r1"


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (
            {"field": "country", "op": "in", "value": ["RU", "NG"]},
            "country SE in [RU, NG]: false",
        ),
        ({"field": "price_amount", "op": "gt", "value": 0.5}, "price_amount 0.04 > 0.5: false"),
        (
            {"field": "reference", "op": "regex", "value": "^x"},
            "reference signup-42 matches /^x/: false",
        ),
        (
            {"field": "reference", "op": "present", "value": True},
            "reference signup-42 present: true",
        ),
    ],
)
def test_trace_text_shows_actual_and_expected(when: dict[str, Any], text: str) -> None:
    decision = decide(make_policy(make_rule(when)), make_facts())
    assert decision.trace[0].conditions[0].text == text


def test_missing_fact_is_shown_in_trace() -> None:
    rule: Rule = make_rule({"field": "country", "op": "eq", "value": "SE"})
    condition = decide(make_policy(rule), make_facts(country=None)).trace[0].conditions[0]
    assert (condition.held, condition.actual) == (False, None)
    assert condition.text == "country (missing) = SE: false"
