"""The engine's decisions and traces, byte for byte, across the starter policy and a policy
using every kind of condition: a guard for rewrites of the engine's hot path.

`golden_traces.json` holds, per case, the SHA-256 of the decision as stored
(`model_dump(mode="json")`, as JSON) and of the answer built from it. It was written by the
engine before its hot path was compiled (issue 17); regenerate it only for an intended
change of the trace: `python -m tests.rules.test_trace_golden`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.rules.containment import Block, Containments
from app.rules.engine import CompiledPolicy, compile_policy, evaluate
from app.rules.facts import Facts, derive_facts
from app.rules.model import Policy
from app.rules.starter import starter_document
from app.services.intake.answers import build_answer
from app.settings import AnswerDefaults

GOLDEN = Path(__file__).with_name("golden_traces.json")
NOW = datetime(2024, 5, 6, 14, 2, 7, 123456, tzinfo=UTC)  # a Monday
ENDPOINTS = (
    "+46701234567",  # SE mobile
    "+46812345678",  # SE fixed line
    "+447700900123",  # GB mobile
    "+19005550123",  # US premium rate
    "+2348031234567",  # NG mobile
    "+4670123",  # too short: invalid, country from the calling code
    "46701234567",  # no +: nothing parses
    "+999123456789",  # no such calling code
    "+46700000001",  # on the allowlist
    "+88212345678",  # on the blocklist prefix (international networks)
)
METHODS = ("sms", "flashcall", "callout", "whatsapp", "seamless")

WIDE_RULES: list[dict[str, Any]] = [
    {
        "name": "odd-hours",
        "priority": 5,
        "mode": "shadow",
        "action": "deny",
        "reason": "odd_hours",
        "when": {
            "any": [
                {"field": "local_hour", "op": "lt", "value": 6},
                {"field": "weekday", "op": "in", "value": ["sat", "sun"]},
                {"not": {"field": "reference", "op": "present", "value": True}},
            ]
        },
    },
    {
        "name": "text-checks",
        "priority": 6,
        "action": "deny",
        "reason": "text_checks",
        "scope": {"methods": ["sms", "flashcall"], "applications": ["app-key-1"]},
        "when": {
            "all": [
                {"field": "number", "op": "starts_with", "value": ["+234", "+1900"]},
                {
                    "any": [
                        {"field": "custom", "op": "regex", "value": "^user=\\d+$"},
                        {"field": "price_amount", "op": "ge", "value": 0.5},
                        {"field": "rate_amount", "op": "ne", "value": 0},
                        {"field": "price_currency", "op": "not_in", "value": ["SEK", "NOK"]},
                    ]
                },
                {"field": "valid", "op": "eq", "value": True},
                {"field": "calling_code", "op": "gt", "value": 1},
            ]
        },
    },
    {
        "name": "cheap-allowed",
        "priority": 7,
        "action": "allow",
        "reason": "cheap_allowed",
        "scope": {"methods": ["sms"]},
        "answer": {"sms_code_type": "Alpha", "sms_expiry": "00:05:00"},
        "when": {
            "all": [
                {"field": "price_amount", "op": "le", "value": 0.01},
                {"field": "number_type", "op": "eq", "value": "mobile"},
            ]
        },
    },
    {
        "name": "shadow-velocity",
        "priority": 8,
        "mode": "shadow",
        "action": "deny",
        "reason": "shadow_velocity",
        "when": {
            "any": [
                {"velocity": {"key": "number", "window": "10m", "max": 2}},
                {"velocity": {"key": "range", "digits": 8, "window": "1h", "max": 5.5}},
                {
                    "velocity": {
                        "key": "application",
                        "window": "1h",
                        "max": 1.25,
                        "measure": "spend",
                        "only_allowed": True,
                    }
                },
                {
                    "velocity": {
                        "key": "country",
                        "window": "1h",
                        "measure": "unverified",
                        "limit": {"floor": 3, "factor": 1.5, "same_hour_days": 7},
                    }
                },
                {
                    "verified": {
                        "key": "range",
                        "drop_last": 3,
                        "window": "1h",
                        "at_most": 1,
                        "min_history": "5m",
                    }
                },
                {
                    "conversion": {
                        "key": "calling_code",
                        "window": "1h",
                        "min_attempts": 3,
                        "below": 0.25,
                    }
                },
            ]
        },
    },
    {
        "name": "off-rule",
        "mode": "off",
        "action": "deny",
        "reason": "never",
        "when": {"all": []},
    },
]


def policies() -> dict[str, CompiledPolicy]:
    starter = Policy.model_validate(starter_document())
    wide_document = starter_document()
    wide_document["rules"] = [*WIDE_RULES, *wide_document["rules"]]
    wide_document["timezone"] = "Europe/Stockholm"
    entries = {"allowlist": "+46700000001", "blocklist": "+88212345678"}
    for named in wide_document["lists"]:
        named["entries"] = [{"value": entries[named["name"]]}]
    wide = Policy.model_validate(wide_document)
    block = Block(7, "pumping", "country", "NG", NOW + timedelta(days=30))
    contained = compile_policy(wide, version="v9")
    containments = Containments(by_key={"country": {"NG": block}})
    object.__setattr__(contained, "containments", containments)
    return {
        "starter": compile_policy(starter, version=3),
        "wide": compile_policy(wide, version=None),
        "contained": contained,
    }


def _aggregates(compiled: CompiledPolicy, rng: random.Random) -> dict[str, float]:
    """Values for some of the policy's aggregates (others missing), ints and fractions."""
    ids = [spec.id for spec in compiled.aggregates] + [b.id for b in compiled.baselines]
    values: dict[str, float] = {}
    for ident in sorted(ids):
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.3:
            values[ident] = 0.0
        elif roll < 0.8:
            values[ident] = float(rng.randint(1, 40))
        else:
            values[ident] = round(rng.uniform(0, 30), rng.choice((1, 3, 7)))
    for history in sorted(compiled.histories, key=lambda h: h.id):
        if rng.random() < 0.7:
            values[history.id] = NOW.timestamp() - rng.choice((0, 30, 299, 300, 4000))
    return values


def cases() -> Iterator[tuple[str, CompiledPolicy, Facts, str]]:
    rng = random.Random(17)
    for name, compiled in policies().items():
        for index in range(120):
            endpoint = ENDPOINTS[index % len(ENDPOINTS)]
            method = rng.choice(METHODS)
            facts = derive_facts(
                method=method,
                endpoint=endpoint,
                price_amount=rng.choice((None, 0.0, 0.01, 0.04, 0.2, 0.75, 1.5)),
                price_currency=rng.choice((None, "eur", "SEK")),
                rate_amount=rng.choice((None, 0.0, 0.03)),
                rate_currency=rng.choice((None, "EUR")),
                reference=rng.choice((None, "", "signup-42")),
                custom=rng.choice((None, "user=42", "free text")),
                application=rng.choice(("app-key-1", "App-Key-2", None)),
                now=NOW + timedelta(hours=rng.randint(0, 6 * 24)),
                aggregates=_aggregates(compiled, rng),
            )
            yield f"{name}-{index}", compiled, facts, method


def digests() -> dict[str, list[str]]:
    defaults = AnswerDefaults()
    out: dict[str, list[str]] = {}
    for case, compiled, facts, method in cases():
        decision = evaluate(compiled, facts)
        document = json.dumps(decision.model_dump(mode="json"), separators=(",", ":"))
        answer = json.dumps(build_answer(method=method, decision=decision, defaults=defaults))
        out[case] = [_sha(document), _sha(answer)]
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_decisions_and_traces_are_unchanged() -> None:
    expected = json.loads(GOLDEN.read_text())
    actual = digests()
    assert actual.keys() == expected.keys()
    changed = [case for case in expected if actual[case] != expected[case]]
    assert not changed, f"{len(changed)} cases changed, first: {changed[:5]}"


def test_cases_cover_every_outcome() -> None:
    """The cases reach the default, rule matches of both actions, shadow matches, skipped
    rules and the containment, so the digests guard each path."""
    reasons: set[str] = set()
    skipped = shadow = 0
    for _, compiled, facts, _ in cases():
        decision = evaluate(compiled, facts)
        reasons.add(decision.reason)
        shadow += bool(decision.shadow)
        skipped += any(entry.skipped for entry in decision.trace)
    assert {"default", "contained", "cheap_allowed", "text_checks"} <= reasons, reasons
    assert len(reasons) >= 8
    assert shadow and skipped


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(digests(), indent=1, sort_keys=True) + "\n")


def test_a_decision_keeps_its_aggregates_as_floats() -> None:
    """The engine builds Decision without validation: counts arriving as ints are stored as
    the floats validation made of them (2.0, not 2, in the stored document)."""
    compiled = policies()["starter"]
    spec = sorted(compiled.aggregates, key=lambda s: s.id)[0]
    facts = derive_facts(
        method="sms",
        endpoint=ENDPOINTS[0],
        price_amount=0.04,
        price_currency="EUR",
        rate_amount=None,
        rate_currency=None,
        reference=None,
        custom=None,
        application="app-key-1",
        now=NOW,
        aggregates={spec.id: 2},
    )
    decision = evaluate(compiled, facts)
    assert type(decision.aggregates[spec.id]) is float
    assert decision.model_dump_json().count(f'"{spec.id}":2.0') == 1
    assert decision == type(decision).model_validate(decision.model_dump())
