"""A replay decides with the trace-less verdict; on every attempt of a generated history
(pumping bursts, real users who verify, late results) it is the decision the traced engine
makes from the same facts, for the starter policy and for a stricter candidate."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from app.rules.engine import compile_policy
from app.rules.model import Policy
from app.rules.starter import starter_document
from app.rules.verdict import of_decision
from app.services.backtest.replay import Replayer
from app.store.backtests import StoredAttempt

from .helpers import at


def history(count: int) -> list[StoredAttempt]:
    """Attempts one to a few seconds apart: a few busy ranges, some expensive, ~half verified."""
    rng = random.Random(14)
    moment, rows = at(0), []
    for i in range(count):
        moment += timedelta(seconds=rng.randint(1, 5))
        prefix = rng.choice(["+4670123", "+4670124", "+23480312", "+447400123"])
        number = prefix + f"{rng.randint(0, 999):03d}"
        ok = rng.random() < 0.5
        rows.append(
            StoredAttempt(
                id=f"fp-{i}", requested_at=moment, method="sms", number=number,
                country=None, calling_code=None, number_type=None, number_valid=None,
                price_amount=rng.choice([0.04, 0.25, 0.6]), price_currency="EUR",
                rate_amount=None, rate_currency=None, reference=None, custom=None,
                app_key=None, action="allow", reason="default", rule_name=None,
                status="SUCCESSFUL" if ok else "FAIL",
                result_at=moment + timedelta(seconds=rng.randint(5, 900)),
            )
        )  # fmt: skip
    return rows


def stricter() -> Policy:
    document = starter_document()
    for rule in document["rules"]:
        if rule["name"] == "number-unverified":
            rule["when"]["velocity"]["max"] = 1
    return Policy.model_validate(document)


@pytest.mark.parametrize("policy", [Policy.model_validate(starter_document()), stricter()])
def test_every_replayed_verdict_is_the_traced_decision(policy: Policy) -> None:
    replayer = Replayer(compile_policy(policy, version="candidate"), bucket_seconds=60)
    denied = 0
    for attempt in history(3000):
        outcome, facts = replayer.decide(attempt)
        assert outcome == of_decision(replayer.explain(facts)), attempt.id
        denied += outcome.action == "deny"
    assert 0 < denied < 3000


def test_replayed_facts_are_the_facts_the_constructor_builds() -> None:
    """`attempt_facts` builds Facts by position: the same value, field for field, as
    Facts(...) by keyword from the same columns."""
    from app.rules.facts import Facts, number_facts
    from app.services.backtest.history import attempt_facts

    for attempt in history(50):
        parsed = number_facts(attempt.number or "")
        built = Facts(
            method="sms",
            number=attempt.number,
            country=parsed.country,
            calling_code=parsed.calling_code,
            number_type=parsed.number_type,
            valid=parsed.valid,
            price_amount=attempt.price_amount,
            price_currency="EUR",
            rate_amount=None,
            rate_currency=None,
            reference=None,
            custom=None,
            application=None,
            now=attempt.requested_at,
            aggregates={"x": 1.0},
        )
        assert attempt_facts(attempt, {"x": 1.0}) == built
