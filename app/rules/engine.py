"""The engine: compile a policy once per change, then `evaluate(compiled, facts) -> Decision`.

Pure and deterministic: the clock and the aggregates arrive inside the facts; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from app.rules.aggregates import (
    AggregateSpec,
    BaselineSpec,
    CounterKey,
    HistorySpec,
    baselines_for,
    histories_for,
    specs_for,
)
from app.rules.containment import NONE, Block, Containments, exempt
from app.rules.decision import ConditionTrace, Decision, RuleMatch, TraceEntry
from app.rules.facts import Facts, facts_from_json
from app.rules.lists import CompiledList, compile_list
from app.rules.model import Action, AnswerOverrides, NamedList, Policy, Rule
from app.rules.nodes import Env, Node, compile_condition
from app.rules.render import render

__all__ = [
    "CompiledPolicy",
    "CompiledRule",
    "Decision",
    "RuleMatch",
    "TraceEntry",
    "compile_policy",
    "evaluate",
    "replay",
]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    node: Node
    applications: frozenset[str] | None
    methods: frozenset[str] | None
    matched: RuleMatch  # what it answers when it matches; frozen, built once
    # Read per rule per attempt by the trace-less verdict (a backtest asks millions of times).
    enforce: bool = field(init=False)
    scoped: bool = field(init=False)  # it has a scope (else every attempt is in it)
    mode: Literal["enforce", "shadow"] = field(init=False)  # as the trace shows it
    # Trace entries built, by the identities of the records in them (see `_run`).
    entries: dict[object, TraceEntry] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", {})
        object.__setattr__(self, "enforce", self.rule.mode == "enforce")
        scoped = self.methods is not None or self.applications is not None
        object.__setattr__(self, "scoped", scoped)
        object.__setattr__(self, "mode", "enforce" if self.enforce else "shadow")

    def in_scope(self, facts: Facts) -> bool:
        """`out_of_scope(facts) is None`, without the text."""
        methods, applications = self.methods, self.applications
        return (methods is None or facts.method in methods) and (
            applications is None or facts.application in applications
        )

    def out_of_scope(self, facts: Facts) -> str | None:
        """Why the attempt is outside this rule's scope, or None when it is inside."""
        if self.methods is not None and facts.method not in self.methods:
            return f"method {facts.method} not in {render(sorted(self.methods))}"
        if self.applications is not None and facts.application not in self.applications:
            return f"application {render(facts.application)} not in scope"
        return None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy ready to evaluate: active rules by (priority, name), lists as lookups."""

    policy: Policy
    rules: tuple[CompiledRule, ...]
    lists: Mapping[str, CompiledList]
    aggregates: frozenset[AggregateSpec]
    counter_keys: frozenset[CounterKey]
    zone: ZoneInfo
    default_action: Action
    version: int | str | None
    # Adaptive limits' baselines, each with the verified count up to which every limit
    # using it is its floor (the shell need not supply keys at or below it).
    baselines: Mapping[BaselineSpec, float]
    # The first-attempt times `min_history` options read (kept with the baselines).
    histories: frozenset[HistorySpec]
    # Active containments (kept current by the shell, not by policy changes).
    containments: Containments = NONE


def compile_policy(
    policy: Policy, *, version: int | str | None = None, previous: CompiledPolicy | None = None
) -> CompiledPolicy:
    """Compile once per policy change; rules with mode `off` are left out entirely. A list
    that is the very one `previous` was compiled from keeps its compiled lookup; one that
    grew from it adds only its new entries to a copy (compile_list)."""
    before = (
        {named.name: (named, previous.lists[named.name]) for named in previous.policy.lists}
        if previous
        else {}
    )
    active = sorted(
        (rule for rule in policy.rules if rule.mode != "off"),
        key=lambda rule: (rule.priority, rule.name),
    )
    specs = frozenset(spec for rule in active for spec in specs_for(rule.when))
    baselines: dict[BaselineSpec, float] = {}
    for rule in active:
        for baseline, threshold in baselines_for(rule.when):
            baselines[baseline] = min(threshold, baselines.get(baseline, threshold))
    return CompiledPolicy(
        policy=policy,
        rules=tuple(_compile_rule(rule) for rule in active),
        lists={named.name: _list(named, before.get(named.name)) for named in policy.lists},
        aggregates=specs,
        counter_keys=frozenset(spec.counter_key for spec in specs),
        zone=ZoneInfo(policy.timezone),
        default_action=policy.default_action,
        version=version,
        baselines=baselines,
        histories=frozenset(h for rule in active for h in histories_for(rule.when)),
    )


def _list(named: NamedList, before: tuple[NamedList, CompiledList] | None) -> CompiledList:
    if before is not None and before[0] is named:
        return before[1]  # the very list compiled before
    return compile_list(named, grown_from=before)


def _compile_rule(rule: Rule) -> CompiledRule:
    scope = rule.scope
    return CompiledRule(
        rule=rule,
        node=compile_condition(rule.when),
        applications=frozenset(scope.applications) if scope and scope.applications else None,
        methods=frozenset(scope.methods) if scope and scope.methods else None,
        matched=RuleMatch(
            rule=rule.name,
            rule_id=rule.id,
            rule_revision=rule.revision,
            action=rule.action,
            reason=rule.reason,
        ),
    )


def evaluate(compiled: CompiledPolicy, facts: Facts) -> Decision:
    """Enforce rules in order, first match decides; shadow rules all run, deciding nothing.

    An active containment covering the attempt decides first (`contained`), unless the
    number is on a list the policy never contains (the allowlist)."""
    if compiled.containments:
        block = compiled.containments.covering(facts, facts.now)
        if block is not None and not exempt(facts, compiled.lists, compiled.policy.never_contain):
            return _contained(compiled, facts, block)
    env = Env(facts, compiled.zone, compiled.lists)
    trace: list[TraceEntry] = []
    shadow: list[RuleMatch] = []
    decided: CompiledRule | None = None
    for rule in compiled.rules:
        enforce = rule.enforce
        if enforce and decided is not None:
            continue
        entry = _run(rule, env)
        trace.append(entry)
        if entry.matched and enforce:
            decided = rule
        elif entry.matched:
            shadow.append(rule.matched)
    return _decision(compiled, facts, decided, shadow, trace)


# A rule's entry is reused when its node wrote the very same records (nodes.py reuses them
# for the same values read), so that the entry's encoded text is too (decision.py). The key
# is the records' ids (one record's, as is: half the starter's rules write one, and a tuple
# of one built through map() was ~30 % of such a rule's run); the entry kept holds those
# records, so while it is kept no other object has their ids. A rule writes as many records
# each time (every node writes its own). A rule keeps at most _ENTRIES, then starts over.
_ENTRIES = 256


def _run(compiled: CompiledRule, env: Env) -> TraceEntry:
    rule = compiled.rule
    skipped = compiled.out_of_scope(env.facts) if compiled.scoped else None
    if skipped is not None:
        return TraceEntry(rule.name, compiled.mode, False, rule.id, skipped, [])
    conditions: list[ConditionTrace] = []
    matched = compiled.node.run(env, conditions, 0)
    key: object = id(conditions[0]) if len(conditions) == 1 else tuple(map(id, conditions))
    entries = compiled.entries
    entry = entries.get(key)
    if entry is None:
        if len(entries) >= _ENTRIES:
            entries.clear()
        entry = TraceEntry(rule.name, compiled.mode, matched, rule.id, None, conditions)
        entries[key] = entry
    return entry


def _decision(
    compiled: CompiledPolicy,
    facts: Facts,
    decided: CompiledRule | None,
    shadow: list[RuleMatch],
    trace: list[TraceEntry],
) -> Decision:
    # Built without validation: every value is the engine's own or the validated policy's
    # (aggregates are floats as validation would make them; see `_aggregates`).
    aggregates, version = _aggregates(facts), compiled.version
    if decided is None:
        default = (compiled.default_action, "default", "default", None, None, None, None)
        return _constructed((*default, shadow, trace, aggregates, version), _DEFAULTED)
    rule = decided.rule
    answer: AnswerOverrides | None = rule.answer if rule.action == "allow" else None
    values = (rule.action, rule.reason, "enforce", rule.name, rule.id, rule.revision, answer)
    return _constructed((*values, shadow, trace, aggregates, version), _DECIDED)


# `Decision.model_construct(**given)` with every field given in order (pydantic's loop over
# the fields, with their defaults' copies, was ~50k instructions of a ~450k evaluation):
# the same __dict__ (fields in declaration order), fields set, no extra, no private values.
# The __dict__ is a dict display and the slots are set through their descriptors:
# dict(zip(fields, values, strict=True)) and object.__setattr__ were ~12k instructions of
# ~20k. tests/rules/test_engine.py holds it to model_construct (a field added to Decision
# and missing here fails it).
_new = Decision.__new__
_set_dict = object.__setattr__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_GIVEN = ("action", "reason", "mode", "shadow", "trace", "aggregates", "policy_version")
_DEFAULTED = frozenset(_GIVEN)
_DECIDED = frozenset((*_GIVEN, "rule", "rule_id", "rule_revision", "answer"))
_CONTAINED = frozenset(_GIVEN) - {"shadow"}


def _constructed(values: tuple[Any, ...], given: frozenset[str]) -> Decision:
    """What `Decision.model_construct` builds from `values` (one per field, in order) when
    the fields named in `given` were passed and the others were left at their defaults."""
    action, reason, mode, rule, rule_id, revision, answer, shadow, trace, aggregates, version = (
        values
    )
    decision = _new(Decision)
    _set_dict(
        decision,
        "__dict__",
        {
            "action": action,
            "reason": reason,
            "mode": mode,
            "rule": rule,
            "rule_id": rule_id,
            "rule_revision": revision,
            "answer": answer,
            "shadow": shadow,
            "trace": trace,
            "aggregates": aggregates,
            "policy_version": version,
        },
    )
    _set_fields_set(decision, set(given))
    _set_extra(decision, None)
    _set_private(decision, None)
    return decision


def _contained(compiled: CompiledPolicy, facts: Facts, block: Block) -> Decision:
    """A deny naming the containment and the alert that created it."""
    condition = ConditionTrace(
        condition="containment",
        held=True,
        text=block.describe(),
        actual={"key": block.key, "value": block.value},
        expected={
            "containment": block.id,
            "alert": block.alert,
            "expires_at": block.expires_at.isoformat() if block.expires_at else None,
        },
    )
    entry = TraceEntry(
        rule=f"containment:{block.id}", mode="enforce", matched=True, conditions=[condition]
    )
    values: tuple[Any, ...] = ("deny", "contained", "enforce", None, None, None, None, [], [entry])
    return _constructed((*values, _aggregates(facts), compiled.version), _CONTAINED)


def _aggregates(facts: Facts) -> dict[str, float]:
    """The facts' aggregates as `Decision` validation would store them (every value a float)."""
    values = dict(facts.aggregates)
    for name, value in values.items():
        if type(value) is not float:
            values[name] = float(value)
    return values


def replay(compiled: CompiledPolicy, stored_facts: Facts | Mapping[str, Any]) -> Decision:
    """Re-run a stored attempt (its facts, clock and aggregates) against `compiled`."""
    facts = stored_facts if isinstance(stored_facts, Facts) else facts_from_json(stored_facts)
    return evaluate(compiled, facts)
