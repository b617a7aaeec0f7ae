"""The fact fields a condition can compare, their kinds, and how rule values are normalised.

Values in rules are normalised the way facts are (country upper case, method lower case, …)
so comparisons are exact at evaluation time.
"""

from __future__ import annotations

from typing import Literal

FieldName = Literal[
    "method",
    "number",
    "country",
    "calling_code",
    "number_type",
    "valid",
    "price_amount",
    "price_currency",
    "rate_amount",
    "rate_currency",
    "reference",
    "custom",
    "application",
    "local_hour",
    "weekday",
]
Op = Literal["eq", "ne", "in", "not_in", "starts_with", "regex", "lt", "le", "gt", "ge", "present"]
Kind = Literal["str", "int", "float", "bool"]
Scalar = str | int | float | bool

METHODS = ("sms", "flashcall", "callout", "whatsapp", "seamless")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NUMBER_TYPES = (
    "mobile",
    "fixed_line",
    "fixed_line_or_mobile",
    "voip",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "uan",
    "pager",
    "personal_number",
    "voicemail",
    "unknown",
)

KINDS: dict[str, Kind] = {
    "method": "str",
    "number": "str",
    "country": "str",
    "calling_code": "int",
    "number_type": "str",
    "valid": "bool",
    "price_amount": "float",
    "price_currency": "str",
    "rate_amount": "float",
    "rate_currency": "str",
    "reference": "str",
    "custom": "str",
    "application": "str",
    "local_hour": "int",
    "weekday": "str",
}
_UPPER = frozenset({"country", "price_currency", "rate_currency"})
_LOWER = frozenset({"method", "application", "number_type", "weekday"})
_CHOICES: dict[str, tuple[str, ...]] = {"weekday": WEEKDAYS, "number_type": NUMBER_TYPES}
STRING_OPS = frozenset({"starts_with", "regex"})
ORDER_OPS = frozenset({"lt", "le", "gt", "ge"})
LIST_OPS = frozenset({"in", "not_in", "starts_with"})


def canonical_method(method: str) -> str:
    """Sinch's method names compared case-insensitively: `flashCall` is `flashcall`."""
    return method.strip().lower()


def normalise_scalar(field: str, value: object) -> Scalar:
    """Check one rule value against the field's kind and normalise it; ValueError otherwise."""
    kind = KINDS[field]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"field {field!r} compares with true or false, got {value!r}")
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"field {field!r} compares with a number, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"field {field!r} compares with a string, got {value!r}")
    return _normalise_text(field, value)


def _normalise_text(field: str, value: str) -> str:
    if field in _UPPER:
        value = value.upper()
    elif field in _LOWER:
        value = canonical_method(value) if field == "method" else value.lower()
    choices = _CHOICES.get(field)
    if choices is not None and value not in choices:
        raise ValueError(f"field {field!r} takes one of {', '.join(choices)}; got {value!r}")
    return value
