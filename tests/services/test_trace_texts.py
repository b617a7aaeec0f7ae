"""The stored decision's text, with the trace's texts reused across decisions (decision.py,
engine.py): always the document the dict path encodes, however often a compiled policy's
entries and records recur, and never an earlier policy's or value's text."""

from __future__ import annotations

import random

from pydantic import TypeAdapter
from pydantic_core import to_json

from app.rules.decision import ConditionTrace, Decision, TraceEntry, trace_json
from app.rules.engine import CompiledPolicy, compile_policy, evaluate
from app.rules.facts import Facts
from app.rules.starter import starter_policy
from app.services.intake.records import decision_document, decision_json
from tests.rules.factories import make_facts, make_policy, make_rule, spec_ids
from tests.rules.test_trace_golden import cases

# Values alike as keys (1 == 1.0 == True, 0.0 == -0.0) but not as text.
ALIKE = [1, 1.0, True, 0, 0.0, -0.0, False, None, 2, 2.0, 3, 21, 20.0, 0.2, 0.5, 0.25, 1e-7]


def _expected(decision: Decision, facts: Facts) -> str:
    return to_json(decision_document(decision, facts)).decode()


def _text(decision: Decision, facts: Facts) -> str:
    """`decision_json`'s bytes as text (UTF-8, as pydantic writes it)."""
    return decision_json(decision, facts).decode()


def _anew(compiled: CompiledPolicy) -> CompiledPolicy:
    """The same policy compiled again: nothing built yet to reuse."""
    again = compile_policy(compiled.policy, version=compiled.version)
    object.__setattr__(again, "containments", compiled.containments)
    return again


def test_reused_texts_encode_as_the_dict_document() -> None:
    """Every golden case (starter and wide policies: lists, shadow and skipped rules, allow
    and deny, the containment), each evaluated again and again in varying order."""
    seen = list(cases())
    order = [*seen, *reversed(seen), *random.Random(3).sample(seen, len(seen)), *seen]
    fresh = {
        case: _expected(evaluate(_anew(compiled), facts), facts)
        for case, compiled, facts, _ in seen
    }
    for case, compiled, facts, _ in order:
        decision = evaluate(compiled, facts)
        text = _text(decision, facts)
        assert text == _expected(decision, facts) == fresh[case]
        stored = Decision.model_validate_json(text[: text.index(',"facts":')] + "}")
        assert _text(stored, facts) == text  # read back: records with no text yet
    assert len(order) > 1000


def test_values_alike_as_keys_are_encoded_as_their_own() -> None:
    policy = starter_policy()
    compiled = compile_policy(policy, version=1)
    ids = spec_ids(compiled)
    rnd = random.Random(11)
    for _ in range(700):  # past the 256 records a node and entries a rule keep
        aggregates = {spec: rnd.choice(ALIKE) for spec in ids if rnd.random() < 0.9}
        facts = make_facts(
            price_amount=rnd.choice(ALIKE),
            valid=rnd.choice([True, False]),
            method=rnd.choice(["sms", "flashcall"]),
            aggregates={k: v for k, v in aggregates.items() if v is not None},
        )
        decision = evaluate(compiled, facts)
        expected = _expected(evaluate(compile_policy(policy, version=1), facts), facts)
        assert _text(decision, facts) == _expected(decision, facts) == expected


def _capped(limit: int, reason: str, revision: int) -> CompiledPolicy:
    when = {"velocity": {"key": "number", "window": "1h", "max": limit}}
    rule = make_rule(when, name="cap", reason=reason, id=7, revision=revision)
    scoped = make_rule(
        {"field": "valid", "op": "eq", "value": True},
        name="scoped",
        mode="shadow",
        scope={"methods": ["flashcall"]},
    )
    return compile_policy(make_policy(rule, scoped), version=revision)


def test_a_changed_rule_or_value_is_encoded_with_its_new_text() -> None:
    facts = make_facts(aggregates={"attempts:number:3600": 4.0})
    before = _capped(3, "too_many", 1)
    raised = _capped(5, "too_many", 2)
    renamed = _capped(3, "still_too_many", 3)
    shown = {
        id(before): ('"reason":"too_many"', "velocity 4 in 1h > max 3: true"),
        id(raised): ('"reason":"default"', "velocity 4 in 1h > max 5: false"),
        id(renamed): ('"reason":"still_too_many"', "velocity 4 in 1h > max 3: true"),
    }
    for compiled in (before, raised, renamed, before, renamed, raised):
        for _ in range(3):
            decision = evaluate(compiled, facts)
            text = _text(decision, facts)
            assert text == _expected(decision, facts)
            assert all(part in text for part in shown[id(compiled)])
    fewer = make_facts(aggregates={"attempts:number:3600": 1.0})
    decision = evaluate(before, fewer)
    text = _text(decision, fewer)
    assert text == _expected(decision, fewer)
    assert "number velocity 1 in 1h > max 3: false" in text


def test_a_rule_reuses_its_entry_for_the_same_records_only() -> None:
    """The mechanism itself: the same values read give the same entry object (whose text is
    then reused), other values another entry."""
    compiled = compile_policy(starter_policy(), version=1)
    counts = {"attempts:number:3600": 1.0, "successes:number:3600": 0.0}
    facts = make_facts(aggregates=counts)
    first, again = evaluate(compiled, facts), evaluate(compiled, facts)
    by_rule = {entry.rule: entry for entry in first.trace}
    reused = [entry.rule for entry in again.trace if entry is by_rule[entry.rule]]
    assert {"price-ceiling", "dead-destination"} <= set(reused)  # the latter: min_history
    assert "allowlist" not in reused  # a list record names the number: built each time
    other = evaluate(compiled, make_facts(aggregates=counts | {"attempts:number:3600": 9.0}))
    changed = [e.rule for e in other.trace if e is not by_rule[e.rule]]
    assert "number-unverified" in changed


def test_first_attempt_ages_around_min_history_are_encoded_as_their_own() -> None:
    """The starter's `min_history 1m`: an age's record is reused by its whole seconds."""
    policy = starter_policy()
    compiled = compile_policy(policy, version=1)
    (history,) = compiled.histories
    now = make_facts().now.timestamp()
    ages = [0, 0.4, 1, 59, 59.4, 59.999, 60, 60.0001, 60.7, 61, 86_399.5, 59.2, 60.1, 0.9]
    for verified in (0.0, 2.0, 3.0):
        for age in ages:
            counts = {"successes:country:86400": verified, history.id: now - age}
            facts = make_facts(aggregates=counts)
            decision = evaluate(compiled, facts)
            expected = _expected(evaluate(compile_policy(policy, version=1), facts), facts)
            assert _text(decision, facts) == _expected(decision, facts) == expected


def test_a_new_record_reads_as_not_yet_encoded() -> None:
    """A record's text slot is set at construction (and by pydantic's validation): reading
    it never raises the AttributeError whose message cost ~2.3k instructions a record."""
    record = ConditionTrace("c", True, "x")
    entry = TraceEntry("r", "enforce", True, None, None, [record])
    read = TypeAdapter(TraceEntry).validate_python(
        {
            "rule": "r",
            "mode": "enforce",
            "matched": True,
            "conditions": [{"condition": "c", "held": True, "text": "x"}],
        }
    )
    assert (record._json, entry._json, read._json, read.conditions[0]._json) == (b"",) * 4
    assert trace_json([entry]) == trace_json([read]) == entry._json.join((b"[", b"]"))
