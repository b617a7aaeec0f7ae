"""Field comparisons and the short texts the trace shows ("country SE in [RU, NG]: false")."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from pydantic import JsonValue

OP_WORDS = {
    "eq": "=",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
    "starts_with": "starts with",
    "regex": "matches",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
_MATCH: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "in": lambda actual, members: actual in members,
    "not_in": lambda actual, members: actual not in members,
    "starts_with": lambda actual, prefixes: isinstance(actual, str) and actual.startswith(prefixes),
    "regex": lambda actual, pattern: isinstance(actual, str) and bool(pattern.search(actual)),
}


def operand(op: str, value: Any) -> Any:
    """The rule value in the form `compare` wants: sets, prefix tuples, compiled patterns."""
    if op in ("in", "not_in"):
        return frozenset(value)
    if op == "starts_with":
        return tuple(value)
    if op == "regex":
        return re.compile(value)
    return value


def compare(op: str, actual: object, prepared: Any) -> bool:
    """`actual op prepared`; a missing fact (None) is false for every op but `present`."""
    if op == "present":
        return (actual is not None and actual != "") is prepared
    if actual is None:
        return False
    if op in _ORDER:
        is_number = isinstance(actual, int | float) and not isinstance(actual, bool)
        return is_number and _ORDER[op](actual, prepared)
    return _MATCH[op](actual, prepared)


def tester(op: str, prepared: Any) -> Callable[[object], bool]:
    """`compare` with `op` and `prepared` bound once per policy: one call per condition."""
    if op == "present":
        return lambda actual: (actual is not None and actual != "") is prepared
    if op in _ORDER:
        order = _ORDER[op]

        def ordered(actual: object) -> bool:
            if actual is None or isinstance(actual, bool):
                return False
            return isinstance(actual, int | float) and order(actual, prepared)

        return ordered
    match = _MATCH[op]
    return lambda actual: actual is not None and match(actual, prepared)


def describe(op: str, value: Any) -> str:
    """The operator and its value as text: "in [RU, NG]", "> 0.5", "present"."""
    if op == "present":
        return "present" if value else "absent"
    if op == "regex":
        return f"matches /{value}/"
    return f"{OP_WORDS[op]} {render(value)}"


# How the trace shows a condition's result, by the result (a bool indexes it).
HELD = ("false", "true")


def render(value: object) -> str:
    # The exact types first (one identity test each): most values the trace shows are these.
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if value is None:
        return "(missing)"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join([render(item) for item in value]) + "]"
    return str(value)


_JSON_TYPES = frozenset({str, int, float, bool, type(None)})


def as_json(value: object) -> JsonValue:
    if type(value) in _JSON_TYPES or isinstance(value, str | int | float | bool):
        return value  # type: ignore[return-value]
    return str(value)
