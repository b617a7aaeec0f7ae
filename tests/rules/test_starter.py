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
        "dead_destination",
        "new_destination",
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


def test_starter_unverified_number_and_shadow_conversion() -> None:
    aggregates = {
        "attempts:number:3600": 4.0,
        "successes:number:3600": 0.0,
        "attempts:country:86400": 100.0,
        "successes:country:86400": 5.0,
    }
    decision = decide(starter_policy(), make_facts(aggregates=aggregates))
    assert (decision.action, decision.reason) == ("deny", "number_velocity")
    assert [m.reason for m in decision.shadow] == ["low_conversion"]


def test_starter_verified_attempts_to_a_number_do_not_count() -> None:
    aggregates = {"attempts:number:3600": 6.0, "successes:number:3600": 3.0}
    assert decide(starter_policy(), make_facts(aggregates=aggregates)).action == "allow"


# 59 allowed before this one, 10 of them verified: 50 allowed unverified with this one.
BLOCK = {"allowed_attempts:range-3:3600": 59.0, "successes:range-3:3600": 10.0}


def test_starter_gives_a_block_whose_users_verify_room() -> None:
    busy = make_facts(aggregates=BLOCK | {"verified_in:range-3:1209600": 200.0})
    decision = decide(starter_policy(), busy)
    assert decision.action == "allow"
    texts = [c.text for entry in decision.trace for c in entry.conditions]
    assert (
        "range-3 allowed unverified 50 in 1h > limit 200 = max(20, 1 \u00d7 200 verified in 14d): "
        "false" in texts
    )


def test_starter_holds_a_block_nobody_verifies_to_its_floor() -> None:
    aggregates = BLOCK | {"attempts:range-3:3600": 60.0}
    decision = decide(starter_policy(), make_facts(aggregates=aggregates))
    assert (decision.action, decision.rule) == ("deny", "range-unverified")


def test_starter_holds_high_cost_blocks_to_three_unverified() -> None:
    facts = make_facts(endpoint="+998901234567", price_amount=0.24)
    counts = {"successes:range-3:3600": 0.0, "successes:country:86400": 9.0}
    counts |= {"allowed_attempts:country:3600": 3.0, "successes:country:3600": 0.0}
    third = facts.with_aggregates(counts | {"allowed_attempts:range-3:3600": 2})
    fourth = facts.with_aggregates(counts | {"allowed_attempts:range-3:3600": 3})
    assert decide(starter_policy(), third).action == "allow"
    assert (decide(starter_policy(), fourth).action, decide(starter_policy(), fourth).rule) == (
        "deny",
        "high-cost-range-unverified",
    )


def _country(
    unverified: float,
    verified_today: float,
    price: float,
    history: float | None = 60,
    spent: float | None = None,
) -> tuple[str, str | None]:
    """`unverified` allowed attempts this one included; the first attempt `history` s ago;
    `spent` allowed before this one within the hour (None: not counted)."""
    facts = make_facts(endpoint="+6777412345", price_amount=price)
    aggregates = {"allowed_attempts:country:3600": unverified - 1, "successes:country:3600": 0.0}
    if spent is not None:
        aggregates["allowed_spend:country:3600"] = spent
    aggregates |= {"successes:country:86400": verified_today, "attempts:country:86400": 0.0}
    if history is not None:
        aggregates["first_seen:country:86400"] = facts.now.timestamp() - history
    decision = decide(starter_policy(), facts.with_aggregates(aggregates))
    return decision.action, decision.rule


def test_starter_stops_a_destination_nobody_verifies() -> None:
    assert _country(20, 0, 0.1) == ("allow", None)
    assert _country(21, 0, 0.1) == ("deny", "dead-destination")
    assert _country(21, 2, 0.1) == ("deny", "dead-destination")
    assert _country(21, 3, 0.1) == ("allow", None)
    assert _country(1, 0, 0.38) == ("allow", None)
    assert _country(2, 0, 0.38) == ("deny", "high-cost-new-destination")
    assert _country(2, 1, 0.38) == ("allow", None)
    assert _country(3, 1, 0.38) == ("deny", "high-cost-dead-destination")


def test_starter_does_not_judge_a_cheap_destination_in_its_first_minute() -> None:
    """Results take up to a minute: a busy country's first seconds are not 'never verifies'
    by count (its budget in money still applies); where an attempt costs 0.20 or more, one
    unverified is all a new destination gets, two once one has verified."""
    assert _country(50, 0, 0.1, history=59) == ("allow", None)
    assert _country(50, 0, 0.1, history=None) == ("allow", None)
    assert _country(1, 0, 0.38, history=None) == ("allow", None)
    assert _country(2, 0, 0.38, history=None) == ("deny", "high-cost-new-destination")
    assert _country(3, 1, 0.38, history=None) == ("deny", "high-cost-dead-destination")


def test_starter_gives_a_new_destination_a_budget_in_money() -> None:
    """Nothing verified today: 2.00 allowed within the hour, then denied until one verifies."""
    assert _country(19, 0, 0.1, history=None, spent=1.85) == ("allow", None)
    assert _country(20, 0, 0.1, history=None, spent=1.95) == ("deny", "new-destination")
    assert _country(20, 1, 0.1, history=None, spent=1.95) == ("allow", None)
    assert _country(1, 0, 0.38, history=None, spent=1.7) == ("deny", "new-destination")


def test_starter_holds_expensive_countries_to_their_verified_history() -> None:
    assert _country(20, 5, 0.38) == ("allow", None)
    assert _country(21, 5, 0.38) == ("deny", "high-cost-country-unverified")


def test_starter_holds_a_block_only_while_it_converts_below_a_fifth() -> None:
    """A block that has just become busy: its results lag the verified baseline."""
    ramp = BLOCK | {"attempts:range-3:3600": 60.0}
    assert decide(starter_policy(), make_facts(aggregates=ramp)).rule == "range-unverified"
    converting = ramp | {"successes:range-3:3600": 12.0}  # 20 %
    assert decide(starter_policy(), make_facts(aggregates=converting)).action == "allow"


def test_starter_allowlist_wins_over_everything() -> None:
    policy = starter_policy().model_dump()
    policy["lists"][0]["entries"] = [{"value": "+449090901234"}]
    policy["lists"][1]["entries"] = [{"value": "+449090901234"}]
    decision = decide(
        type(starter_policy()).model_validate(policy), make_facts(endpoint="+449090901234")
    )
    assert (decision.action, decision.reason) == ("allow", "allowlisted")


def test_starter_lets_a_small_expensive_country_through_again() -> None:
    """Denied attempts do not count: three unverified close it for at most an hour, and
    three verified in a day open it for good."""
    assert _country(3, 1, 0.23) == ("deny", "high-cost-dead-destination")
    assert _country(1, 1, 0.23) == ("allow", None)  # the hour's unverified have left the window
    assert _country(3, 3, 0.23) == ("allow", None)
    assert _country(20, 3, 0.23) == ("allow", None)
    assert _country(21, 3, 0.23) == ("deny", "high-cost-country-unverified")
