"""`plan`: the windows an attempt's aggregates read and the attempt as counted, worked out in
one pass per attempt, give what the aggregates give read one by one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.rules.engine import compile_policy
from app.rules.facts import Facts, derive_facts
from app.rules.model import Policy
from app.rules.starter import starter_policy
from app.services.aggregates import holds_pending, plan, window_query
from app.store.counter_model import BucketClock

NOW = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)
MIXED = Policy.model_validate(
    {
        "default_action": "allow",
        "rules": [
            {
                "name": f"rule-{i}",
                "action": "deny",
                "reason": "limit",
                "when": {"velocity": velocity},
            }
            for i, velocity in enumerate(
                [
                    {"key": "number", "window": "1h", "max": 3, "only_allowed": True},
                    {"key": "number", "window": "1d", "max": 9},
                    {"key": "reference", "window": "1h", "max": 2, "measure": "spend"},
                    {"key": "application", "window": "1h", "max": 5, "only_allowed": True},
                    {"key": "range", "digits": 8, "window": "10m", "max": 4},
                    {"key": "calling_code", "window": "1h", "max": 50},
                    {"key": "global", "window": "1m", "max": 900},
                ]
            )
        ],
    }
)


def _facts(endpoint: str, *, reference: str | None, application: str | None) -> Facts:
    return derive_facts(
        method="sms",
        endpoint=endpoint,
        price_amount=0.07,
        price_currency="EUR",
        rate_amount=None,
        rate_currency=None,
        reference=reference,
        custom=None,
        application=application,
        now=NOW,
    )


SHAPES = [
    _facts("+46701234567", reference="order-1", application="shop"),
    _facts("+12025550123", reference=None, application=None),
    _facts("not a number", reference="", application="shop"),
]


@pytest.mark.parametrize("policy", [starter_policy(), MIXED], ids=["starter", "mixed"])
@pytest.mark.parametrize("facts", SHAPES, ids=["all-facts", "some-missing", "unparsable"])
def test_plan_gives_what_each_aggregate_reads_one_by_one(policy: Policy, facts: Facts) -> None:
    compiled = compile_policy(policy, version=1)
    clock = BucketClock(60)
    expected: dict[object, list[object]] = {}
    for spec in compiled.aggregates:  # the order `plan` keeps
        key = spec.key_value(facts)
        if key is not None:
            expected.setdefault(window_query(spec, key), []).append(spec)
    keys = {k for k in (c.value(facts) for c in compiled.counter_keys) if k is not None}
    held = {
        key
        for spec in compiled.aggregates
        if holds_pending(spec) and (key := spec.key_value(facts)) is not None
    }

    for other in SHAPES:  # the policy's other shapes worked out first: each is its own
        plan(compiled, other, clock)
    wanted, attempt = plan(compiled, facts, clock)
    again, _ = plan(compiled, facts, clock)

    assert [(q, list(specs)) for q, specs in wanted.items()] == list(expected.items())
    assert [(q, list(specs)) for q, specs in again.items()] == list(expected.items())
    assert attempt.keys == tuple(sorted(keys))
    assert attempt.held == tuple(sorted(held & keys))
    assert attempt.bucket == clock.bucket(NOW)
    assert attempt.spend_micros == 70_000
