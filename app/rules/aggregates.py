"""Aggregate specs: which counters (key, window, measure) a policy's conditions need.

The shell computes each spec's value before evaluation and hands it over in
`Facts.aggregates` under `AggregateSpec.id`; the engine itself never counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from app.rules.conditions import AdaptiveLimit, Conversion, Keyed, Velocity, Verified
from app.rules.facts import Facts
from app.rules.model import Condition, walk

Measure = Literal["attempts", "spend", "successes", "allowed_attempts", "allowed_spend"]
_PREFIXES = {"number": "number", "country": "country", "calling_code": "cc"}
_PREFIXES |= {"reference": "ref", "application": "app", "global": "global"}


@dataclass(frozen=True, slots=True)
class CounterKey:
    """What attempts are counted under: a fact (`number`, `country`, …) or a number range.

    A velocity and a conversion over the same key share one counter.
    """

    key: str
    digits: int | None = None
    # The first part of the counter key: "number", "range9", "cc", … (derived once: the
    # request path asks for it under every key of every attempt).
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # range8: the first 8 digits; range-3: all but the last 3
        name = f"range{self.digits}" if self.key == "range" else _PREFIXES[self.key]
        object.__setattr__(self, "name", name)

    def value(self, facts: Facts) -> str | None:
        """The concrete counter for this attempt, e.g. "country:SE"; None if the fact is missing."""
        if self.key == "global":
            return "global"
        fact = self._fact(facts)
        return None if fact is None else f"{self.name}:{fact}"

    def missing(self, facts: Facts) -> bool:
        """Whether `value(facts)` is None (without spelling the key or slicing the number)."""
        key = self.key
        if key == "range":
            number, digits = facts.number, self.digits or 0
            return number is None or (digits < 0 and len(number) - 1 + digits < 1)
        if key == "global":
            return False
        value = getattr(facts, key)
        return value is None or value == ""

    def _fact(self, facts: Facts) -> str | None:
        if self.key == "range":
            number = facts.number
            digits = self.digits or 0
            if number is None or (digits < 0 and len(number) - 1 + digits < 1):
                return None
            return number[: 1 + digits] if digits > 0 else number[:digits]
        value = getattr(facts, self.key)
        return None if value is None or value == "" else str(value)


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """One number the engine needs: `measure` under a counter key over the last window."""

    key: str
    digits: int | None
    window_seconds: int
    measure: Measure
    counter_key: CounterKey = field(init=False, repr=False, compare=False)
    # Stable name used in `Facts.aggregates`, e.g. "attempts:range9:3600".
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counter_key = CounterKey(self.key, self.digits)
        object.__setattr__(self, "counter_key", counter_key)
        object.__setattr__(self, "id", f"{self.measure}:{counter_key.name}:{self.window_seconds}")

    def key_value(self, facts: Facts) -> str | None:
        return self.counter_key.value(facts)


@dataclass(frozen=True, slots=True)
class BaselineSpec:
    """The verified history an adaptive limit is derived from: the successes of a counter key
    over the last `window_seconds`, or in the same hour of each of the last `same_hour_days`
    days. Not counted on the request path: the shell keeps them (see services/baselines.py)
    and hands them over in `Facts.aggregates` under `id`, only for keys above the threshold
    of every limit using it (a key left out has the floor as its limit)."""

    key: str
    digits: int | None
    window_seconds: int | None
    same_hour_days: int | None
    counter_key: CounterKey = field(init=False, repr=False, compare=False)
    # e.g. "verified_in:range-3:1209600", "verified_same_hour:country:7"
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counter_key = CounterKey(self.key, self.digits)
        object.__setattr__(self, "counter_key", counter_key)
        if self.same_hour_days is not None:
            ident = f"verified_same_hour:{counter_key.name}:{self.same_hour_days}"
        else:
            ident = f"verified_in:{counter_key.name}:{self.window_seconds}"
        object.__setattr__(self, "id", ident)

    def key_value(self, facts: Facts) -> str | None:
        return self.counter_key.value(facts)


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """When a counter key's first attempt within the last `window_seconds` was requested,
    for a `verified` condition's `min_history`. Kept by the shell with the baselines (no
    statement on the request path) and handed over in `Facts.aggregates` under `id` as
    seconds since the epoch; a key left out has no attempt before the last refresh."""

    key: str
    digits: int | None
    window_seconds: int
    counter_key: CounterKey = field(init=False, repr=False, compare=False)
    # e.g. "first_seen:country:86400"
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counter_key = CounterKey(self.key, self.digits)
        object.__setattr__(self, "counter_key", counter_key)
        object.__setattr__(self, "id", f"first_seen:{counter_key.name}:{self.window_seconds}")

    def key_value(self, facts: Facts) -> str | None:
        return self.counter_key.value(facts)


def history_spec(condition: Verified) -> HistorySpec:
    spec = condition.verified
    return HistorySpec(spec.key, spec.range_digits, spec.window_seconds)


def histories_for(condition: Condition) -> Iterator[HistorySpec]:
    """The first-attempt times a condition tree's `min_history` options read."""
    for node in walk(condition):
        if isinstance(node, Verified) and node.verified.min_history is not None:
            yield history_spec(node)


def baseline_spec(keyed: Keyed, limit: AdaptiveLimit) -> BaselineSpec:
    window = None if limit.verified_in is None else limit.window_seconds
    return BaselineSpec(keyed.key, keyed.range_digits, window, limit.same_hour_days)


def baselines_for(condition: Condition) -> Iterator[tuple[BaselineSpec, float]]:
    """Every baseline a condition tree's adaptive limits read, with the verified count up to
    which the limit is its floor."""
    for node in walk(condition):
        if isinstance(node, Velocity) and node.velocity.limit is not None:
            limit = node.velocity.limit
            yield baseline_spec(node.velocity, limit), limit.threshold


def _spec(keyed: Keyed, measure: Measure) -> AggregateSpec:
    return AggregateSpec(keyed.key, keyed.range_digits, keyed.window_seconds, measure)


def velocity_specs(condition: Velocity) -> tuple[AggregateSpec, AggregateSpec | None]:
    """What a velocity reads: its measure, and the successes it subtracts (`unverified`)."""
    spec = condition.velocity
    if spec.measure == "unverified":
        attempts: Measure = "allowed_attempts" if spec.only_allowed else "attempts"
        return _spec(spec, attempts), _spec(spec, "successes")
    measure: Measure = spec.measure
    if spec.only_allowed:
        measure = "allowed_attempts" if spec.measure == "attempts" else "allowed_spend"
    return _spec(spec, measure), None


def conversion_specs(condition: Conversion) -> tuple[AggregateSpec, AggregateSpec]:
    """(attempts, successes) for a conversion condition."""
    return _spec(condition.conversion, "attempts"), _spec(condition.conversion, "successes")


def verified_spec(condition: Verified) -> AggregateSpec:
    return _spec(condition.verified, "successes")


def specs_for(condition: Condition) -> Iterator[AggregateSpec]:
    """Every aggregate a condition tree reads."""
    for node in walk(condition):
        if isinstance(node, Velocity):
            counted, verified = velocity_specs(node)
            yield counted
            if verified is not None:
                yield verified
        elif isinstance(node, Conversion):
            yield from conversion_specs(node)
        elif isinstance(node, Verified):
            yield verified_spec(node)
