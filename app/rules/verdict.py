"""The trace-less evaluation: what `evaluate` decides (the action, the deciding rule, every
rule that matched) without building a trace or a Decision. For backtests, which replay
millions of attempts and show the trace of a few; a test holds it to `evaluate`."""

from __future__ import annotations

from dataclasses import dataclass

from app.rules.decision import Decision
from app.rules.engine import CompiledPolicy, CompiledRule, evaluate
from app.rules.facts import Facts
from app.rules.model import Action
from app.rules.nodes import Env


@dataclass(frozen=True, slots=True)
class Verdict:
    """`rule`: the enforce rule that decided (None: the default, or a containment);
    `matched`: every rule evaluated that matched, in evaluation order (shadow ones too)."""

    action: Action
    rule: str | None
    matched: tuple[str, ...]


def verdict(compiled: CompiledPolicy, facts: Facts) -> Verdict:
    """What `evaluate(compiled, facts)` decides, without its trace."""
    if compiled.containments:  # rare and never in a backtest: the traced path decides
        return of_decision(evaluate(compiled, facts))
    env = Env(facts=facts, local=facts.now.astimezone(compiled.zone), lists=compiled.lists)
    matched: list[str] = []
    decided: CompiledRule | None = None
    for rule in compiled.rules:
        enforce = rule.enforce
        if enforce and decided is not None:
            continue
        if (not rule.scoped or rule.in_scope(facts)) and rule.node.holds(env):
            matched.append(rule.matched.rule)
            if enforce:
                decided = rule
    if decided is None:
        return Verdict(compiled.default_action, None, tuple(matched))
    return Verdict(decided.rule.action, decided.rule.name, tuple(matched))


def of_decision(decision: Decision) -> Verdict:
    """The verdict a traced decision holds."""
    matched = tuple(entry.rule for entry in decision.trace if entry.matched)
    return Verdict(decision.action, decision.rule, matched)
