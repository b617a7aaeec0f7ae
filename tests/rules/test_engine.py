"""Evaluation: groups, lists, scope, velocity, conversion, priority, shadow, default."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from app.rules.containment import Block, compile_containments
from app.rules.engine import Decision, compile_policy, evaluate, replay
from app.rules.facts import facts_from_json, facts_to_json
from app.rules.lists import compile_list
from app.rules.model import ListEntry, NamedList

from .factories import NOW, SE_MOBILE, decide, make_facts, make_policy, make_rule

SE = {"field": "country", "op": "eq", "value": "SE"}
NO = {"field": "country", "op": "eq", "value": "NO"}


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"all": [SE, {"field": "valid", "op": "eq", "value": True}]}, True),
        ({"all": [SE, NO]}, False),
        ({"all": []}, True),
        ({"any": [NO, SE]}, True),
        ({"any": [NO]}, False),
        ({"any": []}, False),
        ({"not": NO}, True),
        ({"not": SE}, False),
        ({"not": {"any": [NO, {"all": [SE, {"not": NO}]}]}}, False),
    ],
)
def test_groups(when: dict[str, Any], expected: bool) -> None:
    decision = decide(make_policy(make_rule(when)), make_facts())
    assert (decision.rule == "r1") is expected


def test_group_trace_lists_every_condition_in_order() -> None:
    decision = decide(make_policy(make_rule({"all": [SE, {"not": NO}]})), make_facts())
    trace = decision.trace[0].conditions
    assert [(c.condition, c.held, c.depth) for c in trace] == [
        ("all", True, 0),
        ("country = SE", True, 1),
        ("not", True, 1),
        ("country = NO", False, 2),
    ]


def test_missing_fact_under_not_makes_the_not_true() -> None:
    # A missing fact makes its own comparison false; `not` of it is then true, by design.
    rule = make_rule({"not": SE})
    assert decide(make_policy(rule), make_facts(country=None)).rule == "r1"


LISTS = [
    {
        "name": "blocked",
        "kind": "number",
        "entries": [
            {"value": SE_MOBILE},
            {"value": "+46701111111", "expires_at": (NOW - timedelta(minutes=1)).isoformat()},
            {"value": "+46702222222", "expires_at": (NOW + timedelta(minutes=1)).isoformat()},
        ],
    },
    {
        "name": "ranges",
        "kind": "prefix",
        "entries": [
            {"value": "4670", "note": "no plus is fine"},
            {"value": "+4474", "expires_at": (NOW - timedelta(days=1)).isoformat()},
        ],
    },
]


@pytest.mark.parametrize(
    ("list_name", "endpoint", "expected"),
    [
        ("blocked", SE_MOBILE, True),
        ("blocked", "+46701111111", False),  # expired
        ("blocked", "+46702222222", True),  # expires later
        ("blocked", "+46709999999", False),
        ("ranges", "+46709999999", True),
        ("ranges", "+46731234567", False),
        ("ranges", "+447400123456", False),  # expired prefix
        ("ranges", "garbage", False),  # no number at all
    ],
)
def test_list_membership(list_name: str, endpoint: str, expected: bool) -> None:
    policy = make_policy(make_rule({"in_list": list_name}), lists=LISTS)
    assert (decide(policy, make_facts(endpoint=endpoint)).rule == "r1") is expected


def test_prefix_list_trace_names_the_entry() -> None:
    policy = make_policy(make_rule({"in_list": "ranges"}), lists=LISTS)
    text = decide(policy, make_facts()).trace[0].conditions[0].text
    assert text == f"number {SE_MOBILE} in list ranges (entry +4670): true"


def test_a_list_compiled_before_is_kept_and_a_changed_one_compiled_again() -> None:
    policy = make_policy(make_rule({"in_list": "ranges"}), lists=LISTS)
    first = compile_policy(policy, version=1)
    grown = [
        named.model_copy(update={"entries": [*named.entries, ListEntry(value="+4673")]})
        if named.name == "ranges"
        else named
        for named in policy.lists
    ]
    second = compile_policy(policy.model_copy(update={"lists": grown}), version=2, previous=first)
    for name, compiled in second.lists.items():
        assert (compiled is first.lists[name]) is (name != "ranges")
    assert evaluate(second, make_facts(endpoint="+46731234567")).rule == "r1"
    assert evaluate(first, make_facts(endpoint="+46731234567")).rule is None


def test_a_grown_list_compiles_to_what_it_would_from_scratch() -> None:
    """Added entries go into a copy of the lookup compiled before, when the list holds that
    one's very entries first; otherwise (an entry replaced, the kind changed) from scratch.
    Either way the lookup is a whole compile's, duplicates keeping the longest-lived."""
    rng = random.Random(5)
    hours = [None, *(NOW + timedelta(hours=h) for h in range(-3, 4))]

    def entries(n: int) -> list[ListEntry]:
        values = [f"+4670{rng.randrange(40):02d}" for _ in range(n)]  # duplicates, often
        return [ListEntry(value=v, expires_at=rng.choice(hours)) for v in values]

    for _ in range(50):
        kind = rng.choice(["number", "prefix"])
        base = NamedList(name="l", kind=kind, entries=entries(rng.randrange(0, 30)))
        grown = base.model_copy(update={"entries": [*base.entries, *entries(rng.randrange(5))]})
        replaced = grown.model_copy(
            update={"entries": [*entries(1), *grown.entries[1:]] if grown.entries else []}
        )
        other = grown.model_copy(update={"kind": "prefix" if kind == "number" else "number"})
        for candidate in (grown, replaced, other):
            compiled = compile_list(candidate, grown_from=(base, compile_list(base)))
            assert compiled == compile_list(candidate)


@pytest.mark.parametrize(
    ("scope", "in_scope"),
    [
        ({"methods": ["SMS"]}, True),
        ({"methods": ["flashCall", "callout"]}, False),
        ({"applications": ["APP-KEY-1"]}, True),
        ({"applications": ["other"]}, False),
        ({"applications": ["app-key-1"], "methods": ["whatsapp"]}, False),
    ],
)
def test_scope(scope: dict[str, Any], in_scope: bool) -> None:
    decision = decide(make_policy(make_rule(SE, scope=scope)), make_facts())
    assert (decision.rule == "r1") is in_scope
    assert (decision.trace[0].skipped is None) is in_scope


def test_out_of_scope_rule_is_traced_as_skipped() -> None:
    decision = decide(make_policy(make_rule(SE, scope={"methods": ["flashcall"]})), make_facts())
    entry = decision.trace[0]
    assert (entry.matched, entry.skipped, entry.conditions) == (
        False,
        "method sms not in [flashcall]",
        [],
    )


def velocity(max_: float, **extra: Any) -> dict[str, Any]:
    return {"velocity": {"key": "number", "window": "1h", "max": max_} | extra}


@pytest.mark.parametrize(
    ("when", "aggregates", "expected", "text"),
    [
        (velocity(5), {"attempts:number:3600": 6}, True, "number velocity 6 in 1h > max 5: true"),
        (velocity(5), {"attempts:number:3600": 5}, False, "number velocity 5 in 1h > max 5: false"),
        (velocity(5), {}, False, "number velocity (no count) in 1h > max 5: false"),
        (
            velocity(1.5, measure="spend", window="1d"),
            {"spend:number:86400": 1.52},
            True,
            "number spend 1.52 in 1d > max 1.5: true",
        ),
        (
            velocity(5, only_allowed=True),
            {"allowed_attempts:number:3600": 5},
            True,
            "number allowed velocity 6 in 1h > max 5: true",
        ),
        (
            velocity(1, only_allowed=True, measure="spend"),
            {"allowed_spend:number:3600": 0.95},
            False,
            "number allowed spend 0.99 in 1h > max 1: false",
        ),
        (
            {"velocity": {"key": "range", "digits": 8, "window": 900, "max": 20}},
            {"attempts:range8:900": 21},
            True,
            "range8 velocity 21 in 15m > max 20: true",
        ),
    ],
)
def test_velocity(
    when: dict[str, Any], aggregates: dict[str, float], expected: bool, text: str
) -> None:
    decision = decide(make_policy(make_rule(when)), make_facts(aggregates=aggregates))
    assert (decision.rule == "r1") is expected
    assert decision.trace[0].conditions[0].text == text
    assert decision.aggregates == aggregates


def test_velocity_on_a_missing_key_is_false() -> None:
    rule = make_rule({"velocity": {"key": "reference", "window": "1h", "max": 0}})
    facts = make_facts(reference=None, aggregates={"attempts:reference:3600": 9})
    assert decide(make_policy(rule), facts).action == "allow"


def conversion(**extra: Any) -> dict[str, Any]:
    base = {"key": "country", "window": "24h", "min_attempts": 50, "below": 0.2}
    return {"conversion": base | extra}


@pytest.mark.parametrize(
    ("attempts", "successes", "expected", "text"),
    [
        (60, 3, True, "country conversion 3/60 = 0.050 in 1d < 0.2 (min 50 attempts): true"),
        (60, 12, False, "country conversion 12/60 = 0.200 in 1d < 0.2 (min 50 attempts): false"),
        (49, 0, False, "country conversion 0/49 = 0.000 in 1d < 0.2 (min 50 attempts): false"),
        (50, 0, True, "country conversion 0/50 = 0.000 in 1d < 0.2 (min 50 attempts): true"),
        (None, 0, False, "country conversion (no count) in 1d < 0.2 (min 50 attempts): false"),
    ],
)
def test_conversion(attempts: int | None, successes: int, expected: bool, text: str) -> None:
    aggregates = {"successes:country:86400": float(successes)}
    if attempts is not None:
        aggregates["attempts:country:86400"] = float(attempts)
    decision = decide(make_policy(make_rule(conversion())), make_facts(aggregates=aggregates))
    assert (decision.rule == "r1") is expected
    assert decision.trace[0].conditions[0].text == text


def test_priority_order_and_first_match_wins() -> None:
    rules = [
        make_rule(SE, name="late", priority=50, action="allow", reason="late_rule"),
        make_rule(SE, name="early", priority=5, reason="early_rule"),
        make_rule(NO, name="earliest", priority=1, action="allow", reason="never"),
    ]
    decision = decide(make_policy(*rules), make_facts())
    assert (decision.rule, decision.action, decision.reason) == ("early", "deny", "early_rule")
    assert [t.rule for t in decision.trace] == ["earliest", "early"]


def test_equal_priorities_are_ordered_by_name() -> None:
    rules = [make_rule(SE, name="b", reason="b_rule"), make_rule(SE, name="a", reason="a_rule")]
    assert decide(make_policy(*rules), make_facts()).rule == "a"


@pytest.mark.parametrize("default", ["allow", "deny"])
def test_default_action_when_nothing_matches(default: str) -> None:
    decision = decide(make_policy(make_rule(NO), default_action=default), make_facts())
    assert (decision.action, decision.reason, decision.mode, decision.rule) == (
        default,
        "default",
        "default",
        None,
    )


def test_shadow_rules_run_after_the_decision_and_change_nothing() -> None:
    rules = [
        make_rule(SE, name="decides", priority=10, action="allow", reason="ok_rule"),
        make_rule(SE, name="watch", priority=20, mode="shadow", reason="would_deny"),
        make_rule(SE, name="hidden", priority=30, reason="never_run"),
    ]
    decision = decide(make_policy(*rules), make_facts())
    assert (decision.action, decision.rule) == ("allow", "decides")
    assert [(m.rule, m.action, m.reason) for m in decision.shadow] == [
        ("watch", "deny", "would_deny")
    ]
    assert [t.rule for t in decision.trace] == ["decides", "watch"]


def test_off_rules_are_not_compiled() -> None:
    compiled = compile_policy(make_policy(make_rule(SE, mode="off")), version="v1")
    assert compiled.rules == ()
    assert evaluate(compiled, make_facts()).reason == "default"


def test_decision_carries_rule_identity_and_allow_overrides() -> None:
    rule = make_rule(
        SE, action="allow", reason="sweden", id=7, revision=3, answer={"sms_code_length": 6}
    )
    decision = decide(make_policy(rule), make_facts())
    assert (decision.rule_id, decision.rule_revision, decision.policy_version) == (7, 3, 1)
    assert decision.answer is not None and decision.answer.sms_code_length == 6


def test_deny_carries_no_answer_overrides() -> None:
    rule = make_rule(SE, answer={"sms_code_length": 6})
    assert decide(make_policy(rule), make_facts()).answer is None


def test_decision_json_round_trip_and_replay() -> None:
    policy = make_policy(make_rule(velocity(5)), make_rule(SE, name="s", mode="shadow"))
    compiled = compile_policy(policy, version=4)
    facts = make_facts(aggregates={"attempts:number:3600": 6})
    decision = evaluate(compiled, facts)
    stored = decision.model_dump(mode="json")
    assert Decision.model_validate(stored) == decision
    assert replay(compiled, facts_to_json(facts)) == decision
    assert replay(compiled, facts_from_json(facts_to_json(facts))) == decision


def test_fallback_decision() -> None:
    decision = Decision.fallback("allow")
    assert (decision.action, decision.reason, decision.mode) == ("allow", "fallback", "fallback")
    assert decision.model_dump(mode="json")["trace"] == []


def _as_model_construct_built_it(decision: Decision) -> Decision:
    """The Decision as evaluate built it before (Decision.model_construct), on each path."""
    common = {
        "trace": decision.trace,
        "aggregates": decision.aggregates,
        "policy_version": decision.policy_version,
    }
    if decision.reason == "contained":
        return Decision.model_construct(action="deny", reason="contained", mode="enforce", **common)
    common["shadow"] = decision.shadow
    if decision.mode == "default":
        return Decision.model_construct(
            action=decision.action, reason="default", mode="default", **common
        )
    return Decision.model_construct(
        action=decision.action,
        reason=decision.reason,
        mode="enforce",
        rule=decision.rule,
        rule_id=decision.rule_id,
        rule_revision=decision.rule_revision,
        answer=decision.answer,
        **common,
    )


def test_decisions_are_built_as_model_construct_builds_them() -> None:
    # evaluate fills the Decision's fields itself (no per-field loop): the same __dict__, in
    # the same order, the same fields set and no extra or private values, on all three paths.
    rule = make_rule(SE, action="allow", answer={"sms_code_length": 6})
    shadow = make_rule(SE, name="s1", mode="shadow", action="deny")
    compiled = compile_policy(make_policy(rule, shadow), version=4)
    other = compile_policy(make_policy(make_rule(NO)), version="v")
    block = Block(7, "a1", "country", "SE", NOW + timedelta(hours=1))
    contained = replace(compiled, containments=compile_containments([block]))
    facts = make_facts(aggregates={"x": 2})
    made = [evaluate(compiled, facts), evaluate(other, facts), evaluate(contained, facts)]
    assert [(d.mode, d.reason, len(d.shadow)) for d in made] == [
        ("enforce", "test_reason", 1),
        ("default", "default", 0),
        ("enforce", "contained", 0),
    ]
    for decision in made:
        expected = _as_model_construct_built_it(decision)
        assert list(decision.__dict__.items()) == list(expected.__dict__.items())
        assert decision.model_fields_set == expected.model_fields_set
        assert (decision.__pydantic_extra__, decision.__pydantic_private__) == (None, None)
        assert decision.model_dump_json() == expected.model_dump_json()
