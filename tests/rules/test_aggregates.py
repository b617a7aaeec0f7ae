"""Aggregate specs: ids, concrete counter keys, and what a compiled policy asks for."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.rules.aggregates import AggregateSpec, CounterKey, velocity_specs
from app.rules.conditions import Velocity
from app.rules.engine import compile_policy

from .factories import make_facts, make_policy, make_rule


@pytest.mark.parametrize(
    ("key", "digits", "expected"),
    [
        ("number", None, "number:+46701234567"),
        ("range", 9, "range9:+467012345"),
        ("range", 20, "range20:+46701234567"),
        ("country", None, "country:SE"),
        ("calling_code", None, "cc:46"),
        ("reference", None, "ref:signup-42"),
        ("application", None, "app:app-key-1"),
        ("global", None, "global"),
    ],
)
def test_counter_key_values(key: str, digits: int | None, expected: str) -> None:
    assert CounterKey(key, digits).value(make_facts()) == expected


@pytest.mark.parametrize("key", ["number", "range", "country", "calling_code", "reference"])
def test_missing_fact_has_no_counter(key: str) -> None:
    facts = make_facts(number=None, country=None, calling_code=None, reference=None)
    assert CounterKey(key, 3 if key == "range" else None).value(facts) is None
    assert CounterKey("global").value(facts) == "global"


def test_spec_id_and_key_value() -> None:
    spec = AggregateSpec("range", 9, 3600, "attempts")
    assert spec.id == "attempts:range9:3600"
    assert spec.key_value(make_facts()) == "range9:+467012345"
    assert spec.counter_key == CounterKey("range", 9)
    assert hash(spec) == hash(AggregateSpec("range", 9, 3600, "attempts"))


def test_compiled_policy_collects_specs_of_active_rules_only() -> None:
    rules = [
        make_rule(
            {"velocity": {"key": "country", "window": "1h", "max": 9, "only_allowed": True}},
            name="a",
        ),
        make_rule(
            {
                "any": [
                    {
                        "conversion": {
                            "key": "country",
                            "window": "1d",
                            "min_attempts": 5,
                            "below": 0.5,
                        }
                    }
                ]
            },
            name="b",
            mode="shadow",
        ),
        make_rule(
            {"velocity": {"key": "number", "window": "1h", "max": 1, "measure": "spend"}},
            name="c",
            mode="off",
        ),
    ]
    compiled = compile_policy(make_policy(*rules))
    assert {spec.id for spec in compiled.aggregates} == {
        "allowed_attempts:country:3600",
        "attempts:country:86400",
        "successes:country:86400",
    }
    assert compiled.counter_keys == frozenset({CounterKey("country")})


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("+46701234567", "range-3:+46701234"),  # Sweden, 9 national digits: blocks of 1,000
        ("+14155552671", "range-3:+14155552"),  # North America, 10 national digits
        ("+3545511234", "range-3:+3545511"),  # Iceland, 7 national digits: still 1,000
        ("+4930901820", "range-3:+4930901"),  # a German fixed number
    ],
)
def test_a_range_without_the_last_digits_is_the_same_block_size_everywhere(
    endpoint: str, expected: str
) -> None:
    condition = Velocity.model_validate(
        {"velocity": {"key": "range", "drop_last": 3, "window": "1h", "max": 5}}
    )
    (spec, _) = velocity_specs(condition)
    assert spec.id == "attempts:range-3:3600"
    assert spec.key_value(make_facts(endpoint=endpoint)) == expected


def test_a_range_needs_exactly_one_width() -> None:
    for bad in ({}, {"digits": 8, "drop_last": 3}):
        with pytest.raises(
            ValidationError, match=r"needs digits \(leading digits of the number\) or drop_last"
        ):
            Velocity.model_validate({"velocity": {"key": "range", "window": "1h", "max": 5} | bad})
    with pytest.raises(ValidationError, match="drop_last only applies to key 'range'"):
        Velocity.model_validate(
            {"velocity": {"key": "country", "drop_last": 3, "window": "1h", "max": 5}}
        )


def test_nothing_is_left_of_a_short_number_without_its_last_digits() -> None:
    assert CounterKey("range", -3).value(make_facts(endpoint="+123")) is None
