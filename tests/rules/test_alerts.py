"""Alert rules in the policy document, the alert state machine and containment in the engine:
pure, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from pydantic import ValidationError

from app.rules.alerting import AlertState, Observation, evaluate_alert
from app.rules.alerts import Alert
from app.rules.containment import Block, compile_containments
from app.rules.engine import compile_policy, evaluate
from app.rules.facts import Facts, derive_facts
from app.rules.model import Policy

ISSUE_SHAPE = """
channels:
  - {name: ops, kind: webhook, url: "https://hooks.example/verifyguard", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
  - {name: chat, kind: slack, url: "https://hooks.slack.example/services/T0/B0/X"}
alerts:
  - name: range-unverified
    metric: unverified        # attempts | denied | spend | unverified | conversion
    key: range                # global | country | range (as in rules) | number | application
    window: 10m
    above: 15                 # conversion uses `below` with `min_attempts`
    cooldown: 30m             # no second firing for the same key within it
    notify: [ops, chat]
    contain: {for: 1h, escalate: [6h, 24h], review: false}
"""
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_the_issue_shape_is_accepted() -> None:
    policy = Policy.model_validate(yaml.safe_load(ISSUE_SHAPE))
    [alert] = policy.alerts
    assert (alert.key, alert.digits, alert.window_seconds, alert.cooldown_seconds) == (
        "range",
        8,
        600,
        1800,
    )
    assert alert.contain is not None
    assert [alert.contain.seconds(n) for n in range(4)] == [3600, 21600, 86400, 86400]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"notify": ["pager"]}, "unknown channel 'pager'"),
        ({"metric": "conversion"}, "takes `below`"),
        ({"above": None}, "needs `above` or `relative`"),
        ({"key": "global", "digits": None}, "global alert cannot contain"),
        ({"window": "ten minutes"}, "invalid duration"),
        ({"contain": {"for": "1h", "active_if_dead_over": "7d"}}, "qualifies `review"),
        (
            {"key": "global", "digits": None, "contain": None, "dead_over": "7d"},
            "`dead_over` is for",
        ),
    ],
)
def test_invalid_alerts_are_refused(change: dict[str, object], message: str) -> None:
    document = yaml.safe_load(ISSUE_SHAPE)
    document["alerts"][0].update(change)
    with pytest.raises(ValidationError, match=message):
        Policy.model_validate(document)


def test_a_webhook_secret_must_be_whsec_base64() -> None:
    document = yaml.safe_load(ISSUE_SHAPE)
    document["channels"][0]["secret"] = "hunter2"
    with pytest.raises(ValidationError, match="whsec_"):
        Policy.model_validate(document)


def _alert(**over: object) -> Alert:
    values: dict[str, object] = {
        "name": "a",
        "metric": "attempts",
        "key": "country",
        "window": "10m",
        "above": 5,
        "cooldown": "30m",
    }
    return Alert.model_validate({**values, **over})


def test_fires_once_then_resolves_after_a_full_window_within_threshold() -> None:
    alert = _alert()
    over = {"SE": Observation(6, 6)}
    first = evaluate_alert(alert, over, {}, NOW)
    assert [(t.kind, t.value, t.observed, t.threshold) for t in first.transitions] == [
        ("alert.firing", "SE", 6, 5)
    ]
    states = first.states
    assert evaluate_alert(alert, over, states, NOW + timedelta(minutes=1)).transitions == []
    below = evaluate_alert(alert, {}, states, NOW + timedelta(minutes=2))
    assert below.transitions == []
    states = {**states, **below.states}
    assert evaluate_alert(alert, {}, states, NOW + timedelta(minutes=11)).transitions == []
    done = evaluate_alert(alert, {}, states, NOW + timedelta(minutes=12))
    assert [t.kind for t in done.transitions] == ["alert.resolved"]


def test_cooldown_suppresses_a_second_firing() -> None:
    alert = _alert()
    state = {"SE": AlertState("SE", firing=False, last_fired_at=NOW)}
    over = {"SE": Observation(9, 9)}
    assert evaluate_alert(alert, over, state, NOW + timedelta(minutes=29)).transitions == []
    assert evaluate_alert(alert, over, state, NOW + timedelta(minutes=30)).transitions


def test_conversion_fires_below_with_enough_attempts() -> None:
    alert = _alert(metric="conversion", above=None, below=0.2, min_attempts=50)
    assert not evaluate_alert(alert, {"SE": Observation(0.1, 49)}, {}, NOW).transitions
    assert evaluate_alert(alert, {"SE": Observation(0.1, 50)}, {}, NOW).transitions
    assert not evaluate_alert(alert, {"SE": Observation(0.3, 80)}, {}, NOW).transitions


def test_relative_threshold_needs_history_unless_floored() -> None:
    alert = _alert(above=None, relative={"factor": 3})
    assert not evaluate_alert(alert, {"SE": Observation(100, 100, None)}, {}, NOW).transitions
    assert not evaluate_alert(alert, {"SE": Observation(30, 30, 10.0)}, {}, NOW).transitions
    [fired] = evaluate_alert(alert, {"SE": Observation(31, 31, 10.0)}, {}, NOW).transitions
    assert fired.threshold == 30


POLICY = Policy.model_validate(
    {
        "lists": [{"name": "allowlist", "kind": "number", "entries": [{"value": "+46701230777"}]}],
        "rules": [
            {
                "name": "allowlist",
                "action": "allow",
                "reason": "allowlisted",
                "priority": 0,
                "when": {"in_list": "allowlist"},
            }
        ],
    }
)


def _facts(number: str, at: datetime = NOW) -> Facts:
    return derive_facts(
        method="sms",
        endpoint=number,
        price_amount=None,
        price_currency=None,
        rate_amount=None,
        rate_currency=None,
        reference=None,
        custom=None,
        application="app",
        now=at,
    )


def test_engine_denies_contained_keys_naming_alert_and_containment() -> None:
    blocks = [
        Block(7, "range-unverified", "range", "+46701230", NOW + timedelta(hours=1)),
        Block(8, None, "country", "GB", NOW + timedelta(hours=1)),
    ]
    compiled = replace(compile_policy(POLICY, version=3), containments=compile_containments(blocks))
    decision = evaluate(compiled, _facts("+46701230123"))
    assert (decision.action, decision.reason, decision.mode) == ("deny", "contained", "enforce")
    [entry] = decision.trace
    assert entry.rule == "containment:7"
    assert "range-unverified" in entry.conditions[0].text
    assert evaluate(compiled, _facts("+447700900123")).reason == "contained"
    assert evaluate(compiled, _facts("+46709876543")).reason == "default"
    assert evaluate(compiled, _facts("+46701230777")).reason == "allowlisted"  # never contained
    later = _facts("+46701230123", NOW + timedelta(hours=1))
    assert evaluate(compiled, later).reason == "default"  # expired
