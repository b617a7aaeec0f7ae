"""The starter policy is valid and does what its docstring says."""

from __future__ import annotations

from app.rules.engine import compile_policy
from app.rules.starter import starter_policy

from .factories import decide, make_facts


def test_starter_policy_is_valid_and_documented() -> None:
    policy = starter_policy()
    assert {rule.reason for rule in policy.rules} == {
        "allowlisted",
        "blocklisted",
        "invalid_number",
        "number_type_blocked",
        "price_ceiling",
        "number_velocity",
        "range_velocity",
        "country_velocity",
        "low_conversion",
    }
    assert all(rule.description for rule in policy.rules)
    assert {named.name for named in policy.lists} == {"allowlist", "blocklist"}
    assert compile_policy(policy).rules[0].rule.name == "allowlist"


def test_starter_denies_a_premium_rate_number() -> None:
    decision = decide(starter_policy(), make_facts(endpoint="+449090901234"))
    assert (decision.action, decision.reason) == ("deny", "number_type_blocked")


def test_starter_allows_a_normal_mobile() -> None:
    decision = decide(starter_policy(), make_facts())
    assert (decision.action, decision.reason, decision.shadow) == ("allow", "default", [])


def test_starter_denies_invalid_numbers_and_expensive_attempts() -> None:
    assert decide(starter_policy(), make_facts(endpoint="+4670")).reason == "invalid_number"
    assert decide(starter_policy(), make_facts(price_amount=0.51)).reason == "price_ceiling"


def test_starter_velocity_and_shadow_conversion() -> None:
    aggregates = {
        "attempts:number:3600": 6.0,
        "attempts:country:86400": 100.0,
        "successes:country:86400": 5.0,
    }
    decision = decide(starter_policy(), make_facts(aggregates=aggregates))
    assert (decision.action, decision.reason) == ("deny", "number_velocity")
    assert [m.reason for m in decision.shadow] == ["low_conversion"]


def test_starter_allowlist_wins_over_everything() -> None:
    policy = starter_policy().model_dump()
    policy["lists"][0]["entries"] = [{"value": "+449090901234"}]
    policy["lists"][1]["entries"] = [{"value": "+449090901234"}]
    decision = decide(
        type(starter_policy()).model_validate(policy), make_facts(endpoint="+449090901234")
    )
    assert (decision.action, decision.reason) == ("allow", "allowlisted")


def test_starter_holds_high_cost_blocks_to_five_an_hour() -> None:
    facts = make_facts(endpoint="+998901234567", price_amount=0.24)
    fifth = facts.with_aggregates({"attempts:range8:3600": 5, "allowed_attempts:range8:3600": 4})
    sixth = facts.with_aggregates({"attempts:range8:3600": 6, "allowed_attempts:range8:3600": 5})
    assert decide(starter_policy(), fifth).action == "allow"
    assert (decide(starter_policy(), sixth).action, decide(starter_policy(), sixth).rule) == (
        "deny",
        "high-cost-range-velocity",
    )
