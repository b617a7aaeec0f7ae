"""Condition nodes as plain predicates over the facts, for the trace-less verdict.

Each node's `holds` written out as a closure with its constants bound (ids, limits, operators
and prepared operands): the same tests in the same arithmetic, without an Env per attempt or
a method call per step. A group's children are tried cheapest first (the tests are pure, so
the order changes no result); a list with no entries never matches (`NEVER`), and a group
folds it away. A node of a kind not written out here runs its own `holds`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

from app.rules.aggregates import CounterKey
from app.rules.facts import Facts
from app.rules.lists import CompiledList
from app.rules.nodes import (
    _LOCAL,
    AdaptiveNode,
    ConversionNode,
    Env,
    FieldNode,
    GroupNode,
    HistoryNode,
    ListNode,
    Node,
    VelocityNode,
)
from app.rules.render import compare

Predicate = Callable[[Facts], bool]


def _never(facts: Facts) -> bool:
    return False


NEVER: Predicate = _never
_ORDER = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}
# Cost ranks: what a group tries first.
_FIELD, _LIST, _AGGREGATE = 1, 2, 3


def predicate(node: Node, zone: ZoneInfo, lists: Mapping[str, CompiledList]) -> Predicate:
    """A function returning what `node.holds(env)` returns for the facts' env."""
    return _compile(node, zone, lists)[0]


def _compile(
    node: Node, zone: ZoneInfo, lists: Mapping[str, CompiledList]
) -> tuple[Predicate, int]:
    if isinstance(node, GroupNode):
        return _group(node, zone, lists)
    if isinstance(node, FieldNode):
        return _field(node, zone), _FIELD
    if isinstance(node, ListNode):
        return _list(node, lists), _LIST
    if isinstance(node, VelocityNode):
        return _velocity(node), _AGGREGATE
    if isinstance(node, AdaptiveNode):
        return _adaptive(node), _AGGREGATE
    if isinstance(node, HistoryNode):
        return _history(node), _AGGREGATE
    if isinstance(node, ConversionNode):
        return _conversion(node), _AGGREGATE

    def holds(facts: Facts) -> bool:  # pragma: no cover - every node kind is written out
        return node.holds(Env(facts, zone, lists))

    return holds, _AGGREGATE


def _group(
    node: GroupNode, zone: ZoneInfo, lists: Mapping[str, CompiledList]
) -> tuple[Predicate, int]:
    compiled = [_compile(child, zone, lists) for child in node.children]
    if node.kind == "not":
        inner = compiled[0][0]
        if inner is NEVER:
            return _always, _FIELD
        return (lambda facts: not inner(facts)), compiled[0][1]
    cost = sum(rank for _, rank in compiled)
    ordered = [test for test, _ in sorted(compiled, key=lambda c: c[1])]
    if node.kind == "all":
        if NEVER in ordered:
            return NEVER, _FIELD
        return _all(tuple(ordered)), cost
    alive = tuple(test for test in ordered if test is not NEVER)
    if not alive:
        return NEVER, _FIELD
    return _any(alive), cost


def _always(facts: Facts) -> bool:
    return True


def _all(tests: tuple[Predicate, ...]) -> Predicate:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda facts: first(facts) and second(facts)

    def every(facts: Facts) -> bool:
        for test in tests:  # noqa: SIM110 - a loop, not all() over a generator
            if not test(facts):
                return False
        return True

    return every


def _any(tests: tuple[Predicate, ...]) -> Predicate:
    if len(tests) == 1:
        return tests[0]

    def some(facts: Facts) -> bool:
        for test in tests:  # noqa: SIM110
            if test(facts):
                return True
        return False

    return some


def _field(node: FieldNode, zone: ZoneInfo) -> Predicate:
    op, prepared, name = node.condition.op, node.prepared, node.condition.field
    if name in _LOCAL:
        return lambda facts: compare(op, facts.value(name, facts.now.astimezone(zone)), prepared)
    read = attrgetter(name)
    if op == "eq":
        return lambda facts: (actual := read(facts)) is not None and actual == prepared
    if op == "in":
        return lambda facts: (actual := read(facts)) is not None and actual in prepared
    if op in _ORDER:
        order = _ORDER[op]

        def ordered(facts: Facts) -> bool:
            actual = read(facts)
            kind = type(actual)
            if kind is float or kind is int:  # the usual case, before the exact test
                return bool(order(actual, prepared))
            if actual is None or not isinstance(actual, int | float) or isinstance(actual, bool):
                return False
            return bool(order(actual, prepared))

        return ordered
    return lambda facts: compare(op, read(facts), prepared)


def _list(node: ListNode, lists: Mapping[str, CompiledList]) -> Predicate:
    named = lists.get(node.name)
    if named is None or not named.entries:
        return NEVER
    return lambda facts: named.match(facts.number, facts.now) is not None


Count = Callable[[Facts], float | None]


def _count(node: VelocityNode) -> Count:
    """`node.count`: the aggregate, this attempt added for allowed-only measures, less the
    successes for `unverified`."""
    spec, verified = node.spec, node.verified
    spec_id, missing = spec.id, _missing(spec.counter_key)
    own = {"allowed_attempts": 1, "allowed_spend": 2}.get(spec.measure, 0)
    verified_id = verified.id if verified is not None else None

    def count(facts: Facts) -> float | None:
        aggregates = facts.aggregates
        value = aggregates.get(spec_id)
        if value is None or missing(facts):
            return None
        if own == 1:
            value += 1
        elif own == 2:
            value += facts.price_amount or 0.0
        if verified_id is not None:
            successes = aggregates.get(verified_id)
            if successes is None:
                return None
            value = max(0.0, float(value - successes))
        return value

    return count


def _velocity(node: VelocityNode) -> Predicate:
    count, limit = _count(node), node.max
    if node.at_most:
        return lambda facts: (value := count(facts)) is not None and value <= limit
    return lambda facts: (value := count(facts)) is not None and value > limit


def _adaptive(node: AdaptiveNode) -> Predicate:
    count, baseline_id = _count(node.counted), node.baseline.id
    floor, factor = float(node.adaptive.floor), node.adaptive.factor

    def exceeds(facts: Facts) -> bool:
        value = count(facts)
        if value is None:
            return False
        verified = facts.aggregates.get(baseline_id)
        limit = floor if verified is None else max(floor, round(factor * verified, 6))
        return value > limit

    return exceeds


def _history(node: HistoryNode) -> Predicate:
    count, limit = _count(node.counted), node.counted.max
    history_id, missing = node.history.id, _missing(node.history.counter_key)
    min_seconds = node.min_seconds

    def judged(facts: Facts) -> bool:
        value = count(facts)
        if value is None or value > limit:
            return False
        first = facts.aggregates.get(history_id)
        if first is None or missing(facts):
            return False
        return max(0.0, facts.now.timestamp() - first) >= min_seconds

    return judged


def _conversion(node: ConversionNode) -> Predicate:
    attempts_id, successes_id = node.attempts.id, node.successes.id
    missing = _missing(node.attempts.counter_key)
    least, below = node.min_attempts, node.below

    def converts_below(facts: Facts) -> bool:
        aggregates = facts.aggregates
        attempts = aggregates.get(attempts_id)
        successes = aggregates.get(successes_id)
        if attempts is None or successes is None or missing(facts):
            return False
        ratio = successes / attempts if attempts else 0.0
        return attempts >= least and ratio < below

    return converts_below


def _missing(key: CounterKey) -> Callable[[Facts], bool]:
    """`key.missing`, its branch on the kind of key taken once."""
    if key.key == "global":
        return _never
    if key.key == "range":
        digits = key.digits or 0
        if digits >= 0:
            return lambda facts: facts.number is None
        return lambda facts: (number := facts.number) is None or len(number) - 1 + digits < 1
    read: Callable[[Facts], Any] = attrgetter(key.key)
    return lambda facts: (value := read(facts)) is None or value == ""
