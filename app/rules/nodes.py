"""Compiled conditions: each node evaluates itself against the facts and writes its trace.

Built once per policy (regexes compiled, value lists turned into sets). Every node runs
all its children, so the trace shows each condition; a missing fact makes a leaf false.
`holds` is the same test without the trace (short-circuiting): each node computes its result
once, in a helper both paths call, so an option added to a node holds on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from app.rules.aggregates import (
    AggregateSpec,
    BaselineSpec,
    HistorySpec,
    baseline_spec,
    conversion_specs,
    history_spec,
    velocity_specs,
    verified_spec,
)
from app.rules.conditions import AdaptiveLimit, FieldCondition
from app.rules.decision import ConditionTrace
from app.rules.facts import Facts
from app.rules.lists import CompiledList
from app.rules.model import AllOf, AnyOf, Condition, InList, Not, Velocity, Verified
from app.rules.render import HELD, as_json, describe, operand, render, tester

_LOCAL = frozenset({"local_hour", "weekday"})  # facts read from `now` in the policy's zone
TIMES = " \u00d7 "  # the multiplication sign, as the trace shows it
_MEASURE_WORDS = {
    "attempts": "velocity",
    "spend": "spend",
    "allowed_attempts": "allowed velocity",
    "allowed_spend": "allowed spend",
    "successes": "verified",
}


# Each node's trace records, by what it read: a record depends only on the node (its depth
# included) and the values it read, so one built for a value is reused for the same value
# again (the starter policy's 30 conditions read a handful of distinct values between them:
# a country, a type, small counts). Records are never changed once built (decision.py),
# so decisions may share them. A value's key is typed, and a falsy one's is its repr: 1,
# 1.0 and True, and 0.0 and -0.0, render or serialize differently. A repr (a str) stands
# where a truthy value's class does, so "" never meets the string "''". A node keeps at most
# _MEMO records, then starts over (a count that keeps rising is new each time).
_MEMO = 256
_Memo = dict[Any, ConditionTrace]


def _key(value: object) -> tuple[object, object]:
    return (value.__class__, value) if value else (repr(value), None)


def _kept(memo: _Memo, key: object, record: ConditionTrace) -> ConditionTrace:
    if len(memo) >= _MEMO:
        memo.clear()
    memo[key] = record
    return record


# Not frozen: built once per evaluation, and a frozen dataclass's __init__ sets each field
# through object.__setattr__ (~3x the cost). Nothing changes it once built.
@dataclass(slots=True)
class Env:
    facts: Facts
    zone: tzinfo  # the policy's
    lists: Mapping[str, CompiledList]

    @property
    def local(self) -> datetime:
        """`now` in the policy's timezone, when a condition reads it (local_hour, weekday):
        most policies never do, and the conversion was ~4k instructions an evaluation."""
        return self.facts.now.astimezone(self.zone)


class Node(Protocol):
    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool: ...

    def holds(self, env: Env) -> bool:
        """What `run` returns, writing no trace."""
        ...


@dataclass(frozen=True, slots=True)
class GroupNode:
    """`all`, `any` or `not` (a one-child group whose result is negated)."""

    kind: str
    children: tuple[Node, ...]
    head: str = field(init=False)  # "all of 3: " (the trace's constant part)
    memo: _Memo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _derive(self, head=f"{self.kind} of {len(self.children)}: ", memo={})

    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool:
        mark = len(out)
        inner = depth + 1
        count = 0  # for `not`, its child's result
        for child in self.children:
            if child.run(env, out, inner):
                count += 1
        record = self.memo.get((depth, count))
        if record is None:
            record = _kept(self.memo, (depth, count), self._record(count, depth))
        out.insert(mark, record)
        return record.held

    def _record(self, count: int, depth: int) -> ConditionTrace:
        kind = self.kind
        if kind == "not":
            result = count > 0
            held = not result
            text = f"not ({HELD[result]}): {HELD[held]}"
        else:
            held = count == len(self.children) if kind == "all" else count > 0
            text = f"{self.head}{count} held: {HELD[held]}"
        return ConditionTrace(kind, held, text, None, None, depth)

    def holds(self, env: Env) -> bool:
        kind = self.kind
        if kind == "not":
            return not self.children[0].holds(env)
        # Loops, not all()/any() over a generator (its frames were ~10% of a backtest).
        if kind == "all":
            for child in self.children:  # noqa: SIM110
                if not child.holds(env):
                    return False
            return True
        for child in self.children:  # noqa: SIM110
            if child.holds(env):
                return True
        return False


@dataclass(frozen=True, slots=True)
class FieldNode:
    condition: FieldCondition
    prepared: Any
    # The trace's constant parts, rendered once per policy.
    what: str = field(init=False)
    label: str = field(init=False)
    expected: Any = field(init=False)
    # `compare` with the op and the prepared value bound; whether the fact is local time.
    test: Callable[[object], bool] = field(init=False)
    fact: str = field(init=False)  # the condition's field (read on a model, ~3x as long)
    local: bool = field(init=False)
    memo: _Memo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        cond = self.condition
        what = describe(cond.op, cond.value)
        expected = as_json(cond.value) if not isinstance(cond.value, list) else [*cond.value]
        _derive(self, what=what, label=f"{cond.field} {what}", expected=expected)
        _derive(self, test=tester(cond.op, self.prepared), local=cond.field in _LOCAL, memo={})
        _derive(self, fact=cond.field)

    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool:
        name = self.fact
        facts = env.facts
        actual = facts.value(name, env.local) if self.local else getattr(facts, name)
        # _key(actual), inline (the most common nodes)
        key = (depth, actual.__class__, actual) if actual else (depth, repr(actual), None)
        record = self.memo.get(key)
        if record is None:
            held = self.test(actual)
            text = f"{name} {render(actual)} {self.what}: {HELD[held]}"
            record = ConditionTrace(self.label, held, text, as_json(actual), self.expected, depth)
            record = _kept(self.memo, key, record)
        out.append(record)
        return record.held

    def holds(self, env: Env) -> bool:
        name = self.fact
        facts = env.facts
        return self.test(facts.value(name, env.local) if self.local else getattr(facts, name))


@dataclass(frozen=True, slots=True)
class ListNode:
    name: str
    label: str = field(init=False)

    def __post_init__(self) -> None:
        _derive(self, label=f"in_list {self.name}")

    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool:
        number = env.facts.number
        entry = self.entry(env)
        held = entry is not None
        via = f" (entry {entry})" if entry is not None and entry != number else ""
        text = f"number {render(number)} in list {self.name}{via}: {HELD[held]}"
        out.append(ConditionTrace(self.label, held, text, number, self.name, depth))
        return held

    def holds(self, env: Env) -> bool:
        return self.entry(env) is not None

    def entry(self, env: Env) -> str | None:
        """The list entry the number matches, if any."""
        compiled = env.lists.get(self.name)
        return compiled.match(env.facts.number, env.facts.now) if compiled is not None else None


@dataclass(frozen=True, slots=True)
class VelocityNode:
    """Holds when the aggregate, this attempt included, is above `max` (at most `max`, with
    `at_most`: the `verified` condition); for `unverified`, the attempts less the successes
    among them (`verified`). With `adaptive`, the limit is max(floor, factor x the key's
    verified baseline) instead of `max` (see AdaptiveNode)."""

    spec: AggregateSpec
    max: float
    window: str
    verified: AggregateSpec | None = None
    at_most: bool = False
    head: str = field(init=False)
    tail: str = field(init=False)
    label: str = field(init=False)
    # What `count` reads, resolved once: the aggregate ids, what this attempt adds.
    counted_id: str = field(init=False)
    verified_id: str | None = field(init=False)
    missing: Callable[[Facts], bool] = field(init=False)  # the counter key's `missing`
    fact: str | None = field(init=False)  # the fact it names, read here (None: range, global)
    adds: int = field(init=False)  # 0 nothing, 1 one attempt, 2 its price
    memo: _Memo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        head = f"{_key_name(self.spec)} {self._words()}"
        limit = f"<= at most {render(self.max)}" if self.at_most else f"> max {render(self.max)}"
        tail = f"in {self.window} {limit}"
        _derive(self, head=head, tail=tail, label=f"{head} {tail}")
        adds = {"allowed_attempts": 1, "allowed_spend": 2}.get(self.spec.measure, 0)
        verified_id = self.verified.id if self.verified is not None else None
        _derive(self, counted_id=self.spec.id, verified_id=verified_id, adds=adds, memo={})
        key = self.spec.counter_key.key
        _derive(self, missing=self.spec.counter_key.missing, fact=_fact_named(key))

    def _words(self) -> str:
        if self.verified is None:
            return _MEASURE_WORDS[self.spec.measure]
        return "allowed unverified" if self.spec.measure == "allowed_attempts" else "unverified"

    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool:
        value = self.count(env.facts)
        key = (depth, value.__class__, value) if value else (depth, repr(value), None)
        record = self.memo.get(key)
        if record is None:
            held = self.exceeds(value)
            shown = "(no count)" if value is None else render(value)
            text = f"{self.head} {shown} {self.tail}: {HELD[held]}"
            record = ConditionTrace(self.label, held, text, value, self.max, depth)
            record = _kept(self.memo, key, record)
        out.append(record)
        return record.held

    def holds(self, env: Env) -> bool:
        return self.exceeds(self.count(env.facts))

    def exceeds(self, value: float | None) -> bool:
        return value is not None and (value <= self.max if self.at_most else value > self.max)

    def count(self, facts: Facts) -> float | None:
        """Allowed-only counters hold earlier allowed attempts; add this one to compare."""
        aggregates = facts.aggregates
        value = aggregates.get(self.counted_id)
        if value is None:
            return None
        fact = self.fact  # `missing`, inline for a key that names a fact (most of them)
        if fact is not None:
            named = getattr(facts, fact)
            if named is None or named == "":
                return None
        elif self.missing(facts):
            return None
        adds = self.adds
        if adds == 1:
            value += 1
        elif adds == 2:
            value += facts.price_amount or 0.0
        if self.verified_id is not None:
            successes = aggregates.get(self.verified_id)
            if successes is None:
                return None
            value = value - successes
            # max(0.0, float(value)), without the builtin's call (NaN and -0.0 give 0.0)
            value = float(value) if value > 0 else 0.0
        return value


@dataclass(frozen=True, slots=True)
class AdaptiveNode:
    """A velocity whose limit is max(floor, factor x verified baseline). The baseline arrives
    in the facts' aggregates; a key without one has the floor (the shell leaves out keys
    whose baseline cannot lift the limit above it)."""

    counted: VelocityNode
    baseline: BaselineSpec
    adaptive: AdaptiveLimit
    label: str = field(init=False)
    # The limit's constants and the trace's constant parts, rendered once per policy.
    floor: float = field(init=False)
    factor: float = field(init=False)
    baseline_id: str = field(init=False)
    at_floor: str = field(init=False)  # "floor 20 (20 or fewer verified in 14d)"
    scaled: tuple[str, str] = field(init=False)  # around the verified count in "max(…)"
    count_tail: str = field(init=False)  # " in 1h > limit "
    memo: _Memo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        limit = self.adaptive
        floor, factor, baseline = float(limit.floor), limit.factor, limit.baseline_text
        formula = f"max({render(limit.floor)}, {render(factor)}{TIMES}verified)"
        label = f"{self.counted.head} in {self.counted.window} > limit {formula}"
        under = f"{render(round(limit.threshold, 2))} or fewer verified {baseline}"
        scaled = (f"max({render(floor)}, {render(factor)}{TIMES}", f" verified {baseline})")
        _derive(self, label=label, floor=floor, factor=factor, baseline_id=self.baseline.id)
        _derive(self, at_floor=f"floor {render(floor)} ({under})", scaled=scaled)
        _derive(self, count_tail=f" in {self.counted.window} > limit ", memo={})

    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool:
        facts = env.facts
        value = self.counted.count(facts)
        base = facts.aggregates.get(self.baseline_id)
        # (depth, _key(value), _key(base)), flat and inline (three nodes of the starter's)
        key = (
            depth,
            value.__class__ if value else repr(value),
            value or None,
            base.__class__ if base else repr(base),
            base or None,
        )
        record = self.memo.get(key)
        if record is None:
            limit, why = self.limit(facts)
            held = value is not None and value > limit
            shown = "(no count)" if value is None else render(value)
            head, tail, at = self.counted.head, self.count_tail, render(limit)
            text = f"{head} {shown}{tail}{at} = {why}: {HELD[held]}"
            record = ConditionTrace(self.label, held, text, value, limit, depth)
            record = _kept(self.memo, key, record)
        out.append(record)
        return record.held

    def holds(self, env: Env) -> bool:
        value = self.counted.count(env.facts)
        return value is not None and value > self.limit_value(env.facts)

    def limit_value(self, facts: Facts) -> float:
        """The effective limit."""
        verified = facts.aggregates.get(self.baseline_id)
        if verified is None:
            return self.floor
        return max(self.floor, round(self.factor * verified, 6))

    def limit(self, facts: Facts) -> tuple[float, str]:
        """The effective limit, and how it was computed (for the trace)."""
        verified = facts.aggregates.get(self.baseline_id)
        if verified is None:
            return self.floor, self.at_floor
        before, after = self.scaled
        limit = max(self.floor, round(self.factor * verified, 6))
        return limit, f"{before}{render(verified)}{after}"


@dataclass(frozen=True, slots=True)
class HistoryNode:
    """A `verified` condition with `min_history`: holds when the verified count is at most
    its limit and the key's first attempt in the window is at least `min_seconds` old. The
    first-attempt time arrives in the facts' aggregates; a key without one has no attempt
    before the shell last looked (it is new: not judged yet)."""

    counted: VelocityNode
    history: HistorySpec
    min_seconds: int
    min_text: str
    label: str = field(init=False)
    memo: _Memo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _derive(self, label=f"{self.counted.label}, history >= {self.min_text}", memo={})

    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool:
        counted = self.counted
        value = counted.count(env.facts)
        age = self.age(env.facts)
        # The record shows the age in whole seconds, and min_seconds is whole: the age is
        # never negative, so age >= min_seconds exactly when its whole seconds are.
        seconds = None if age is None else int(age)
        key = (depth, _key(value), seconds)
        record = self.memo.get(key)
        if record is None:
            old = self.old_enough(age)
            held = self.judge(value, age)
            shown = "(no count)" if value is None else render(value)
            since = "no earlier attempt" if seconds is None else f"first attempt {seconds}s ago"
            history = f"{since} {'>=' if old else '<'} min_history {self.min_text}"
            text = f"{counted.head} {shown} {counted.tail}, {history}: {HELD[held]}"
            record = ConditionTrace(self.label, held, text, value, counted.max, depth)
            record = _kept(self.memo, key, record)
        out.append(record)
        return record.held

    def holds(self, env: Env) -> bool:
        return self.judge(self.counted.count(env.facts), self.age(env.facts))

    def judge(self, value: float | None, age: float | None) -> bool:
        """The one test both paths (run, with its trace; holds, without) apply."""
        return value is not None and value <= self.counted.max and self.old_enough(age)

    def old_enough(self, age: float | None) -> bool:
        return age is not None and age >= self.min_seconds

    def age(self, facts: Facts) -> float | None:
        """Seconds since the key's first attempt in the window (None: not known yet)."""
        first = facts.aggregates.get(self.history.id)
        if first is None or self.history.counter_key.missing(facts):
            return None
        return max(0.0, facts.now.timestamp() - first)


@dataclass(frozen=True, slots=True)
class ConversionNode:
    """Holds when attempts >= min_attempts and successes / attempts < below."""

    attempts: AggregateSpec
    successes: AggregateSpec
    min_attempts: int
    below: float
    window: str
    head: str = field(init=False)
    rule: str = field(init=False)
    label: str = field(init=False)
    memo: _Memo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        rule = f"in {self.window} < {render(self.below)} (min {self.min_attempts} attempts)"
        head = f"{_key_name(self.attempts)} conversion"
        _derive(self, head=head, rule=rule, label=f"{head} {rule}", memo={})

    def run(self, env: Env, out: list[ConditionTrace], depth: int) -> bool:
        attempts, successes, ratio, held = self.measure(env.facts)
        # (depth, _key(attempts), _key(successes)), flat and inline
        key = (
            depth,
            attempts.__class__ if attempts else repr(attempts),
            attempts or None,
            successes.__class__ if successes else repr(successes),
            successes or None,
        )
        record = self.memo.get(key)
        if record is None:
            head, rule = self.head, self.rule
            if attempts is None or successes is None or ratio is None:
                shown = "(no count)"
            else:
                shown = f"{render(successes)}/{render(attempts)} = {ratio:.3f}"
            text = f"{head} {shown} {rule}: {HELD[held]}"
            actual = None if ratio is None else round(ratio, 6)
            record = ConditionTrace(self.label, held, text, actual, self.below, depth)
            record = _kept(self.memo, key, record)
        out.append(record)
        return record.held

    def holds(self, env: Env) -> bool:
        return self.measure(env.facts)[3]

    def measure(self, facts: Facts) -> tuple[float | None, float | None, float | None, bool]:
        """(attempts, successes, their ratio, whether the condition holds)."""
        attempts, successes = (
            facts.aggregates.get(self.attempts.id),
            facts.aggregates.get(self.successes.id),
        )
        if self.attempts.counter_key.missing(facts):
            attempts = None
        if attempts is None or successes is None:
            return attempts, successes, None, False
        ratio = successes / attempts if attempts else 0.0
        return attempts, successes, ratio, attempts >= self.min_attempts and ratio < self.below


def _derive(node: object, **constants: Any) -> None:
    """Set a frozen node's `init=False` fields: the trace's constant parts, rendered once."""
    for name, value in constants.items():
        object.__setattr__(node, name, value)


def _fact_named(key: str) -> str | None:
    """The fact a counter key reads as it is (`CounterKey.missing` tests it for None or "")."""
    return None if key in ("range", "global") else key


def _key_name(spec: AggregateSpec) -> str:
    return spec.counter_key.name if spec.key == "range" else spec.key


def compile_condition(condition: Condition) -> Node:
    """The evaluable node for a validated condition tree."""
    if isinstance(condition, AllOf):
        return _group("all", condition.all)
    if isinstance(condition, AnyOf):
        return _group("any", condition.any)
    if isinstance(condition, Not):
        return GroupNode("not", (compile_condition(condition.not_),))
    if isinstance(condition, FieldCondition):
        return FieldNode(condition, operand(condition.op, condition.value))
    if isinstance(condition, InList):
        return ListNode(condition.in_list)
    if isinstance(condition, Velocity):
        return _velocity(condition)
    if isinstance(condition, Verified):
        return _verified(condition)
    attempts, successes = conversion_specs(condition)
    spec_c = condition.conversion
    return ConversionNode(attempts, successes, spec_c.min_attempts, spec_c.below, spec_c.window)


def _velocity(condition: Velocity) -> Node:
    spec = condition.velocity
    counted, verified = velocity_specs(condition)
    if spec.limit is None:
        assert spec.max is not None  # validated: one of the two
        return VelocityNode(counted, float(spec.max), spec.window, verified)
    node = VelocityNode(counted, spec.limit.floor, spec.window, verified)
    return AdaptiveNode(node, baseline_spec(spec, spec.limit), spec.limit)


def _verified(condition: Verified) -> Node:
    spec = condition.verified
    node = VelocityNode(verified_spec(condition), spec.at_most, spec.window, at_most=True)
    if spec.min_history is None:
        return node
    return HistoryNode(node, history_spec(condition), spec.min_history_seconds, spec.min_history)


def _group(kind: str, items: Sequence[Condition]) -> GroupNode:
    return GroupNode(kind, tuple(compile_condition(item) for item in items))
