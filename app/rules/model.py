"""The policy as data: rules, scopes, answer overrides, named lists, validated on load.

Conditions live in `app.rules.conditions` and are re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from app.rules.alerts import Alert, Channel, check_alerting
from app.rules.conditions import (
    INT32_MAX,
    AllOf,
    AnyOf,
    Condition,
    Conversion,
    ConversionSpec,
    FieldCondition,
    Frozen,
    InList,
    Not,
    Velocity,
    VelocitySpec,
    Verified,
    VerifiedSpec,
)
from app.rules.fields import METHODS, canonical_method

__all__ = [
    "Action",
    "Alert",
    "AllOf",
    "AnswerOverrides",
    "AnyOf",
    "Channel",
    "Condition",
    "Conversion",
    "ConversionSpec",
    "FieldCondition",
    "InList",
    "ListEntry",
    "Mode",
    "NamedList",
    "Not",
    "Policy",
    "Rule",
    "Scope",
    "Velocity",
    "VelocitySpec",
    "Verified",
    "VerifiedSpec",
    "children",
    "walk",
]

Action = Literal["allow", "deny"]
Mode = Literal["enforce", "shadow", "off"]
CodeType = Literal["Numeric", "Alpha", "Alphanumeric"]
E164 = r"^\+[1-9]\d{1,14}$"
_PREFIX = re.compile(r"^\+?[0-9]{1,15}$")
_E164_LINES = re.compile(r"(?:\+[1-9]\d{1,14}\n)*")
_COMPACT = re.compile(r"\+[0-9]{1,15}")  # a value as `_value` leaves it
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"


class AnswerOverrides(Frozen):
    """Per-rule settings for the method object of an allow answer (see sinch-callbacks.md)."""

    sms_code_type: CodeType | None = None
    sms_expiry: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$")
    sms_code_length: int | None = Field(default=None, ge=4, le=10)
    flashcall_dial_timeout: int | None = Field(default=None, ge=5, le=120)
    flashcall_interception_timeout: int | None = Field(default=None, ge=5, le=120)
    flashcall_cli: str | None = Field(default=None, pattern=E164)
    callout_locale: str | None = Field(
        default=None, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35
    )
    whatsapp_code_type: CodeType | None = None


class Scope(Frozen):
    """Where a rule applies; None means everywhere. Compared case-insensitively."""

    applications: list[str] | None = Field(default=None, min_length=1)
    methods: list[str] | None = Field(default=None, min_length=1)

    @field_validator("applications")
    @classmethod
    def _applications(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [app.strip().lower() for app in value]

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        methods = [canonical_method(method) for method in value]
        unknown = [method for method in methods if method not in METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}: use {', '.join(METHODS)}")
        return methods


class Rule(Frozen):
    """One rule: when `when` holds (and the attempt is in scope), answer `action`."""

    name: str = Field(min_length=1, max_length=100, pattern=_NAME)
    description: str = ""
    priority: int = Field(default=100, ge=-INT32_MAX, le=INT32_MAX)
    mode: Mode = "enforce"
    action: Action
    reason: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    when: Condition
    scope: Scope | None = None
    answer: AnswerOverrides | None = None
    revision: int = Field(default=1, ge=1, le=INT32_MAX)
    id: int | None = Field(default=None, ge=1, le=INT32_MAX)


class ListEntry(Frozen):
    """A number (E.164) or a digit prefix (`+4470`), optionally expiring by itself."""

    value: str
    note: str = ""
    expires_at: datetime | None = None

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        if _COMPACT.fullmatch(value):  # as stored: lists are loaded with every policy change
            return value
        compact = re.sub(r"[\s().-]", "", value)
        if not _PREFIX.match(compact):
            raise ValueError(f"list entry {value!r} is not a number or a digit prefix")
        return compact if compact.startswith("+") else "+" + compact

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """Stores without timezone support (SQLite) hand back naive UTC: make it aware."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class NamedList(Frozen):
    """A named set of numbers (exact match) or prefixes (starts-with match)."""

    name: str = Field(min_length=1, max_length=100, pattern=_NAME)
    kind: Literal["number", "prefix"]
    description: str = ""
    entries: list[ListEntry] = Field(default_factory=list)

    @field_validator("entries")
    @classmethod
    def _numbers_are_e164(cls, entries: list[ListEntry], info: ValidationInfo) -> list[ListEntry]:
        # A field validator, not the model's: a model validator ran again whenever a policy
        # was validated with the list in it (a list reused by a load: held_lists.py). One
        # match over every value, one per line (a value holds no whitespace: `_value`).
        if info.data.get("kind") == "number" and not _E164_LINES.fullmatch(
            "".join(entry.value + "\n" for entry in entries)
        ):
            name = info.data.get("name")
            for entry in entries:
                if not re.match(E164, entry.value):
                    raise ValueError(f"list {name!r}: {entry.value!r} is not E.164")
        return entries


class Policy(Frozen):
    """Rules, the lists they refer to, the default action and the timezone for time facts."""

    rules: list[Rule] = Field(default_factory=list)
    lists: list[NamedList] = Field(default_factory=list)
    default_action: Action = "allow"
    timezone: str = "UTC"
    channels: list[Channel] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)
    # Lists whose numbers no containment ever blocks.
    never_contain: list[str] = Field(default_factory=lambda: ["allowlist"])

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("rules")
    @classmethod
    def _rule_names(cls, rules: list[Rule]) -> list[Rule]:
        _unique("rule", [rule.name for rule in rules])
        return rules

    @field_validator("lists")
    @classmethod
    def _list_names(cls, lists: list[NamedList]) -> list[NamedList]:
        _unique("list", [named.name for named in lists])
        return lists

    @model_validator(mode="after")
    def _references(self) -> Policy:
        known = {named.name for named in self.lists}
        for rule in self.rules:
            for condition in walk(rule.when):
                if isinstance(condition, InList) and condition.in_list not in known:
                    raise ValueError(
                        f"rule {rule.name!r} refers to unknown list {condition.in_list!r}"
                    )
        check_alerting(self.channels, self.alerts, known, self.never_contain)
        return self


def check_timezone(value: str) -> str:
    """`value` if it names a timezone ZoneInfo knows ("Europe/Stockholm"); ValueError otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}") from None
    return value


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} name {name!r}")
        seen.add(name)


def walk(condition: Condition) -> Iterator[Condition]:
    """Every condition in the tree, depth first, the root first."""
    yield condition
    for _, child in children(condition):
        yield from walk(child)


def children(condition: Condition) -> list[tuple[str, Condition]]:
    """A group's conditions, each with its place in the group (`all.0`, `any.1`, `not`)."""
    if isinstance(condition, AllOf):
        return [(f"all.{index}", child) for index, child in enumerate(condition.all)]
    if isinstance(condition, AnyOf):
        return [(f"any.{index}", child) for index, child in enumerate(condition.any)]
    if isinstance(condition, Not):
        return [("not", condition.not_)]
    return []
