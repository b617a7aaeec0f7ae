"""Policy validation: errors name the field (the admin API turns them into 422 with a loc)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from app.rules.durations import format_duration, parse_duration
from app.rules.model import ListEntry, NamedList, Policy, Rule
from app.rules.starter import starter_policy

BASE: dict[str, Any] = {"name": "r", "action": "deny", "reason": "some_reason"}


def rule_error(when: Any, **fields: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Rule.model_validate(BASE | {"when": when} | fields)
    return caught.value


@pytest.mark.parametrize(
    ("when", "loc", "message"),
    [
        ({"field": "colour", "op": "eq", "value": "x"}, ("when", "field", "field"), "'method'"),
        ({"field": "country", "op": "like", "value": "x"}, ("when", "field", "op"), "'eq'"),
        (
            {"field": "reference", "op": "regex", "value": "(unclosed"},
            ("when", "field", "value"),
            "invalid regex for field 'reference'",
        ),
        (
            {"field": "country", "op": "in", "value": "SE"},
            ("when", "field", "value"),
            "op 'in' on field 'country' takes a list",
        ),
        (
            {"field": "country", "op": "gt", "value": 3},
            ("when", "field", "value"),
            "needs a numeric field; 'country'",
        ),
        (
            {"field": "price_amount", "op": "lt", "value": "cheap"},
            ("when", "field", "value"),
            "field 'price_amount' compares with a number",
        ),
        (
            {"field": "valid", "op": "eq", "value": 1},
            ("when", "field", "value"),
            "field 'valid' compares with true or false",
        ),
        (
            {"field": "calling_code", "op": "regex", "value": "4"},
            ("when", "field", "value"),
            "needs a text field",
        ),
        (
            {"field": "weekday", "op": "eq", "value": "monday"},
            ("when", "field", "value"),
            "field 'weekday' takes one of",
        ),
        (
            {"field": "number_type", "op": "in", "value": ["premium"]},
            ("when", "field", "value"),
            "field 'number_type' takes one of",
        ),
        (
            {"field": "reference", "op": "present", "value": "yes"},
            ("when", "field", "value"),
            "takes true or false",
        ),
        (
            {"field": "number", "op": "starts_with", "value": [""]},
            ("when", "field", "value"),
            "starts_with takes non-empty strings",
        ),
        (
            {"field": "country", "op": "eq", "value": ["SE"]},
            ("when", "field", "value"),
            "takes a single value",
        ),
        ({"colour": "red"}, ("when",), "a condition has one of the keys"),
        ({"all": [{"nope": 1}]}, ("when", "all", "all", 0), "a condition has one of the keys"),
        (
            {"field": "country", "op": "eq", "value": "SE", "extra": 1},
            ("when", "field", "extra"),
            "Extra inputs",
        ),
        (
            {"velocity": {"key": "range", "window": "1h", "max": 5}},
            ("when", "velocity", "velocity"),
            "key 'range' needs digits",
        ),
        (
            {"velocity": {"key": "number", "digits": 3, "window": "1h", "max": 5}},
            ("when", "velocity", "velocity"),
            "digits only applies to key 'range'",
        ),
        (
            {"velocity": {"key": "number", "window": "1 fortnight", "max": 5}},
            ("when", "velocity", "velocity", "window"),
            "invalid duration",
        ),
        (
            {"conversion": {"key": "country", "window": "1d", "min_attempts": 5, "below": 2}},
            ("when", "conversion", "conversion", "below"),
            "less than or equal to 1",
        ),
    ],
)
def test_condition_errors_name_the_field(
    when: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    errors = rule_error(when).errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == loc
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"reason": "Country Blocked"}, ("reason",)),
        ({"name": ""}, ("name",)),
        ({"action": "block"}, ("action",)),
        ({"mode": "dry_run"}, ("mode",)),
        ({"scope": {"methods": ["pigeon"]}}, ("scope", "methods")),
        ({"answer": {"sms_expiry": "5 minutes"}}, ("answer", "sms_expiry")),
        ({"answer": {"sms_code_length": 12}}, ("answer", "sms_code_length")),
        ({"answer": {"flashcall_dial_timeout": 3}}, ("answer", "flashcall_dial_timeout")),
        ({"answer": {"flashcall_cli": "0701234567"}}, ("answer", "flashcall_cli")),
    ],
)
def test_rule_field_errors(fields: dict[str, Any], loc: tuple[str, ...]) -> None:
    errors = rule_error({"all": []}, **fields).errors()
    assert [e["loc"] for e in errors] == [loc]


def policy_error(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(document)
    return str(caught.value)


def test_unknown_list_names_the_rule() -> None:
    rule = BASE | {"name": "uses-list", "when": {"not": {"in_list": "vip"}}}
    assert "rule 'uses-list' refers to unknown list 'vip'" in policy_error({"rules": [rule]})


def test_duplicate_rule_names() -> None:
    rule = BASE | {"when": {"all": []}}
    assert "duplicate rule name 'r'" in policy_error({"rules": [rule, rule]})


def test_duplicate_list_names() -> None:
    named = {"name": "l", "kind": "number"}
    assert "duplicate list name 'l'" in policy_error({"lists": [named, named]})


def _among_valid(value: str) -> list[dict[str, str]]:
    """`value` between two valid numbers: the one named is the one that is not."""
    return [{"value": "+46701234567"}, {"value": value}, {"value": "+46701234568"}]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"lists": [{"name": "l", "kind": "number", "entries": [{"value": "+0701"}]}]}, "E.164"),
        (
            {"lists": [{"name": "l", "kind": "number", "entries": _among_valid("+0701")}]},
            "'+0701' is not E.164",
        ),
        (
            {"lists": [{"name": "l", "kind": "number", "entries": _among_valid("+1")}]},
            "'+1' is not E.164",
        ),
        ({"lists": [{"name": "l", "kind": "prefix", "entries": [{"value": "+44a"}]}]}, "prefix"),
    ],
)
def test_policy_errors(document: dict[str, Any], message: str) -> None:
    assert message in policy_error(document)


def test_naive_list_expiry_is_taken_as_utc() -> None:
    named = NamedList.model_validate(
        {
            "name": "l",
            "kind": "prefix",
            "entries": [{"value": "+44", "expires_at": "2024-01-01T00:00"}],
        }
    )
    assert named.entries[0].expires_at == datetime(2024, 1, 1, tzinfo=UTC)


def test_list_values_are_compacted_and_stored_ones_kept() -> None:
    entries = [{"value": "46 (70) 123-45"}, {"value": "+4670"}, {"value": "4470"}]
    named = NamedList.model_validate({"name": "l", "kind": "prefix", "entries": entries})
    assert [entry.value for entry in named.entries] == ["+467012345", "+4670", "+4470"]
    with pytest.raises(ValidationError, match="not a number or a digit prefix"):
        NamedList.model_validate({"name": "l", "kind": "prefix", "entries": [{"value": "+1x"}]})


def _with_nul_in(where: str) -> dict[str, Any]:
    entry = {"value": "+46701234567", "note": "a\u0000b" if where == "entry" else ""}
    listed = {"name": "blocklist" if where != "list" else "block\u0000", "kind": "number"}
    return {"lists": [listed | {"entries": [entry]}], "rules": []}


@pytest.mark.parametrize("where", ["entry", "list"])
def test_nul_is_refused_at_any_depth(where: str) -> None:
    """The outermost model walks the whole document once (conditions.Frozen); what is nested
    is not walked again, and still nothing with a NUL gets through."""
    document = _with_nul_in(where)
    with pytest.raises(ValidationError, match="NUL character"):
        Policy.model_validate(document)
    with pytest.raises(ValidationError, match="NUL character"):
        NamedList.model_validate(document["lists"][0])
    # Each model checks for itself when it is the outermost one; a walk that failed or
    # finished leaves none of them unchecked.
    with pytest.raises(ValidationError, match="NUL character"):
        ListEntry.model_validate({"value": "+46701234567", "note": "\u0000"})
    assert Policy.model_validate({"lists": [{"name": "l", "kind": "number"}]}).lists[0].name == "l"
    with pytest.raises(ValidationError, match="NUL character"):
        ListEntry(value="+46701234567", note="x\u0000")


def test_values_are_normalised() -> None:
    rule = Rule.model_validate(
        BASE
        | {
            "when": {"field": "country", "op": "in", "value": ["se", "No"]},
            "scope": {"methods": ["flashCall"], "applications": ["ABC"]},
        }
    )
    assert rule.model_dump(mode="json", include={"when", "scope"}) == {
        "when": {"field": "country", "op": "in", "value": ["SE", "NO"]},
        "scope": {"applications": ["abc"], "methods": ["flashcall"]},
    }


def test_policy_json_round_trip() -> None:
    policy = starter_policy()
    document = policy.model_dump(mode="json", exclude_none=True)
    assert document["rules"][6]["when"]["all"][0] == {
        "velocity": {
            "key": "range",
            "drop_last": 3,
            "window": "1h",
            "limit": {"floor": 20, "factor": 1.0, "verified_in": "14d"},
            "measure": "unverified",
            "only_allowed": True,
        }
    }
    assert document["rules"][10]["when"]["all"][0] == {
        "verified": {"key": "country", "window": "1d", "at_most": 2, "min_history": "1m"}
    }
    assert Policy.model_validate_json(policy.model_dump_json()) == policy
    assert Policy.model_validate(document) == policy


def test_not_serialises_under_its_json_key() -> None:
    rule = Rule.model_validate(BASE | {"when": {"not": {"in_list": "x"}}})
    assert rule.model_dump(mode="json")["when"] == {"not": {"in_list": "x"}}


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("30s", 30, "30s"),
        ("15m", 900, "15m"),
        ("1h", 3600, "1h"),
        ("24h", 86400, "1d"),
        ("1w", 604800, "1w"),
        (90, 90, "90s"),
        ("5400", 5400, "90m"),
    ],
)
def test_durations(text: str | int, seconds: int, canonical: str) -> None:
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == canonical


@pytest.mark.parametrize("bad", ["", "1y", "h", "-1h", 0, True, "400d"])
def test_bad_durations(bad: str | int) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)
