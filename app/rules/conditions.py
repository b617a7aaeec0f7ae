"""Condition models: the tree a rule's `when` is made of, validated when a policy is loaded.

A condition is a JSON object told apart by its one key: `all`, `any`, `not`, `field`,
`in_list`, `velocity` or `conversion`.
"""

from __future__ import annotations

import re
import threading
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.rules.durations import format_duration, parse_duration
from app.rules.fields import (
    KINDS,
    LIST_OPS,
    ORDER_OPS,
    STRING_OPS,
    FieldName,
    Op,
    Scalar,
    normalise_scalar,
)

CounterKeyName = Literal[
    "number", "range", "country", "calling_code", "reference", "application", "global"
]

# Ids, revisions and priorities are stored in 32-bit integer columns.
INT32_MAX = 2**31 - 1


class Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    @model_validator(mode="wrap")
    @classmethod
    def _no_nul(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """U+0000 in text is refused: PostgreSQL cannot store it (nor would anyone mean it).

        The outermost model walks everything it was given, once; the models nested in it are
        validated from parts of that, so they do not walk their parts again (a policy with
        long lists walked each entry three times: the policy, its list, the entry)."""
        if getattr(_walking, "active", False):
            return handler(data)
        if _has_nul(data):
            raise ValueError("text must not contain the NUL character (U+0000)")
        _walking.active = True
        try:
            return handler(data)
        finally:
            _walking.active = False


# Set while a model validates what its walk covered (per thread: validation runs on the
# event loop's thread and, on SQLite, on the writer's).
_walking = threading.local()


def _has_nul(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


class AllOf(Frozen):
    """Holds when every condition holds (an empty list holds)."""

    all: list[Condition]


class AnyOf(Frozen):
    """Holds when at least one condition holds (an empty list does not)."""

    any: list[Condition]


class Not(Frozen):
    """Holds when the inner condition does not."""

    not_: Condition = Field(alias="not")


class FieldCondition(Frozen):
    """Compare one fact. `regex` uses `re.search` (anchor with ^…$ for a full match);
    `starts_with` takes a list of prefixes; `present` takes true or false."""

    field: FieldName
    op: Op
    value: Scalar | list[Scalar]

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: Any, info: ValidationInfo) -> Any:
        field, op = info.data.get("field"), info.data.get("op")
        if field is None or op is None:
            return value
        return check_value(field, op, value)


def check_value(field: str, op: str, value: Any) -> Any:
    """The normalised value for `field op value`; ValueError naming the field otherwise."""
    if op == "present":
        if not isinstance(value, bool):
            raise ValueError(f"op 'present' on field {field!r} takes true or false")
        return value
    if op in STRING_OPS and KINDS[field] != "str":
        raise ValueError(f"op {op!r} needs a text field; {field!r} is {KINDS[field]}")
    if op in ORDER_OPS and KINDS[field] not in ("int", "float"):
        raise ValueError(f"op {op!r} needs a numeric field; {field!r} is {KINDS[field]}")
    if op in LIST_OPS:
        if not isinstance(value, list):
            raise ValueError(f"op {op!r} on field {field!r} takes a list of values")
        if op == "starts_with":
            return [_text(field, item) for item in value]
        return [normalise_scalar(field, item) for item in value]
    if isinstance(value, list):
        raise ValueError(f"op {op!r} on field {field!r} takes a single value, not a list")
    if op == "regex":
        return _pattern(field, value)
    return normalise_scalar(field, value)


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {field!r}: starts_with takes non-empty strings, got {value!r}")
    return str(normalise_scalar(field, value)) if field != "number" else value


def _pattern(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"op 'regex' on field {field!r} takes a pattern string")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex for field {field!r}: {exc}") from exc
    return value


class InList(Frozen):
    """Holds when the number is in the named list (exact number, or starts with a prefix)."""

    in_list: str = Field(min_length=1, max_length=100)


class Keyed(Frozen):
    """A counter key and window shared by velocity and conversion conditions."""

    key: CounterKeyName
    digits: int | None = Field(default=None, ge=1, le=15)
    drop_last: int | None = Field(default=None, ge=1, le=12)
    window: str

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> str:
        if not isinstance(value, str | int):
            raise ValueError("window is a duration like '1h' or a number of seconds")
        return format_duration(parse_duration(value))

    @model_validator(mode="after")
    def _digits(self) -> Keyed:
        if self.key == "range" and (self.digits is None) == (self.drop_last is None):
            raise ValueError(
                "key 'range' needs digits (leading digits of the number) or drop_last (the "
                "number without its last digits), not both"
            )
        for name in ("digits", "drop_last"):
            if self.key != "range" and getattr(self, name) is not None:
                raise ValueError(f"{name} only applies to key 'range', not {self.key!r}")
        return self

    @property
    def range_digits(self) -> int | None:
        """The range's width as the counters take it: leading digits kept (> 0), or
        trailing digits dropped (< 0, the same block size in every numbering plan)."""
        return -self.drop_last if self.drop_last is not None else self.digits

    @property
    def window_seconds(self) -> int:
        return parse_duration(self.window)


class AdaptiveLimit(Frozen):
    """A limit from the key's own verified history: max(floor, factor x the attempts of the
    key that ended SUCCESSFUL in the baseline), the baseline being the last `verified_in`
    (e.g. 14d) or the same hour of the last `same_hour_days` days."""

    floor: int | float = Field(ge=0)
    factor: float = Field(gt=0, le=100)
    verified_in: str | None = None
    same_hour_days: int | None = Field(default=None, ge=1, le=28)

    @field_validator("verified_in", mode="before")
    @classmethod
    def _window(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str | int):
            raise ValueError("verified_in is a duration like '14d' or a number of seconds")
        seconds = parse_duration(value)
        days, rest = divmod(seconds, 86_400)
        return f"{days}d" if days and not rest else format_duration(seconds)

    @model_validator(mode="after")
    def _one_baseline(self) -> AdaptiveLimit:
        if (self.verified_in is None) == (self.same_hour_days is None):
            raise ValueError("an adaptive limit needs verified_in or same_hour_days, not both")
        return self

    @property
    def threshold(self) -> float:
        """Verified attempts up to which the limit is the floor."""
        return self.floor / self.factor

    @property
    def window_seconds(self) -> int:
        return parse_duration(self.verified_in) if self.verified_in else 0

    @property
    def baseline_text(self) -> str:
        """How the trace names the baseline: "in 14d", "in this hour of the last 7 days"."""
        if self.verified_in is not None:
            return f"in {self.verified_in}"
        return f"in this hour of the last {self.same_hour_days} days"


class VelocitySpec(Keyed):
    """Attempts (spend, or attempts not verified yet) per key over the window, this attempt
    included, above `max` (or an adaptive `limit`). `unverified` counts the window's attempts
    less those that have ended SUCCESSFUL: an attempt stops counting when its successful
    result arrives."""

    max: int | float | None = Field(default=None, ge=0)
    limit: AdaptiveLimit | None = None
    measure: Literal["attempts", "spend", "unverified"] = "attempts"
    only_allowed: bool = False

    @model_validator(mode="after")
    def _one_limit(self) -> VelocitySpec:
        if (self.max is None) == (self.limit is None):
            raise ValueError("a velocity needs max (a constant) or limit (adaptive), not both")
        return self


class ConversionSpec(Keyed):
    """Share of attempts that ended SUCCESSFUL, below `below`, once `min_attempts` is reached."""

    min_attempts: int = Field(ge=1)
    below: float = Field(gt=0, le=1)


class VerifiedSpec(Keyed):
    """Attempts per key that ended SUCCESSFUL over the window, at most `at_most`: a new or
    dead destination (no real users), where pumping shows first. With `min_history` (e.g.
    "1m") it holds only once the key's first attempt in the window is at least that old:
    results take time to arrive, so the first seconds of a busy destination are not judged
    as never verifying (the shell keeps first-attempt times with the baselines)."""

    at_most: int = Field(ge=0)
    min_history: str | None = None

    @field_validator("min_history", mode="before")
    @classmethod
    def _min_history(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str | int):
            raise ValueError("min_history is a duration like '1m' or a number of seconds")
        return format_duration(parse_duration(value))

    @model_validator(mode="after")
    def _history_within_window(self) -> VerifiedSpec:
        if self.min_history is not None and self.min_history_seconds >= self.window_seconds:
            raise ValueError("min_history must be shorter than the window")
        return self

    @property
    def min_history_seconds(self) -> int:
        return parse_duration(self.min_history) if self.min_history else 0


class Velocity(Frozen):
    velocity: VelocitySpec


class Verified(Frozen):
    verified: VerifiedSpec


class Conversion(Frozen):
    conversion: ConversionSpec


_TAGS = ("all", "any", "not", "field", "in_list", "velocity", "conversion", "verified")
_CLASS_TAGS: dict[type[BaseModel], str] = {
    AllOf: "all",
    AnyOf: "any",
    Not: "not",
    FieldCondition: "field",
    InList: "in_list",
    Velocity: "velocity",
    Conversion: "conversion",
    Verified: "verified",
}


CONDITION_TAGS = frozenset(_TAGS)


def field_path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """An error location without the union tags pydantic inserts for conditions.

    `when.velocity.velocity.window` (tag, then field) becomes `when.velocity.window`.
    """
    out: list[int | str] = []
    tag_dropped = False
    for part in loc:
        previous = out[-1] if out else None
        in_slot = previous in ("when", "not") or isinstance(previous, int)
        if part in CONDITION_TAGS and in_slot and not tag_dropped:
            tag_dropped = True
            continue
        tag_dropped = False
        out.append(part)
    return tuple(out)


def condition_tag(value: Any) -> str | None:
    """Which kind of condition `value` is: the first known key present."""
    if isinstance(value, dict):
        return next((tag for tag in _TAGS if tag in value), None)
    return _CLASS_TAGS.get(type(value))


Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")]
    | Annotated[FieldCondition, Tag("field")]
    | Annotated[InList, Tag("in_list")]
    | Annotated[Velocity, Tag("velocity")]
    | Annotated[Conversion, Tag("conversion")]
    | Annotated[Verified, Tag("verified")],
    Discriminator(
        condition_tag,
        custom_error_type="condition_kind",
        custom_error_message="a condition has one of the keys: " + ", ".join(_TAGS),
    ),
]

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()
