"""The trace-less evaluation: what `evaluate` decides (the action, the deciding rule, every
rule that matched) without building a trace or a Decision. For backtests, which replay
millions of attempts and show the trace of a few; a test holds it to `evaluate`.

`compile_verdict` turns a compiled policy into plain closures once (app/rules/predicates.py):
per rule its scope and one predicate over the facts, each condition node's test written out
with its constants bound, the cheap tests of an `all`/`any` first, and rules that can never
match (an empty list) left out. A verdict is then a loop over the rules; the Verdict for each
combination of matched rules is built once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.rules.decision import Decision
from app.rules.engine import CompiledPolicy, evaluate
from app.rules.facts import Facts
from app.rules.model import Action
from app.rules.predicates import NEVER, predicate


@dataclass(frozen=True, slots=True)
class Verdict:
    """`rule`: the enforce rule that decided (None: the default, or a containment);
    `matched`: every rule evaluated that matched, in evaluation order (shadow ones too)."""

    action: Action
    rule: str | None
    matched: tuple[str, ...]


Judge = Callable[[Facts], Verdict]


def verdict(compiled: CompiledPolicy, facts: Facts) -> Verdict:
    """What `evaluate(compiled, facts)` decides, without its trace (compiles the policy on
    each call: to decide many attempts, call `compile_verdict` once)."""
    return compile_verdict(compiled)(facts)


def compile_verdict(compiled: CompiledPolicy) -> Judge:
    """A function deciding as `evaluate(compiled, facts)` does, without its trace."""
    if compiled.containments:  # rare and never in a backtest: the traced path decides
        return lambda facts: of_decision(evaluate(compiled, facts))
    # (name, enforce, methods, applications, predicate) per rule that can match
    program = []
    actions: dict[str, Action] = {}
    for rule in compiled.rules:
        test = predicate(rule.node, compiled.zone, compiled.lists)
        if test is NEVER:
            continue
        program.append((rule.rule.name, rule.enforce, rule.methods, rule.applications, test))
        actions[rule.rule.name] = rule.rule.action
    enforcing = {name for name, enforce, *_ in program if enforce}
    default = compiled.default_action
    verdicts: dict[tuple[str, ...], Verdict] = {}

    def of(matched: tuple[str, ...]) -> Verdict:
        decided = next((name for name in matched if name in enforcing), None)
        action = default if decided is None else actions[decided]
        made = verdicts[matched] = Verdict(action, decided, matched)
        return made

    def judge(facts: Facts) -> Verdict:
        matched: list[str] = []
        decided = False
        for name, enforce, methods, applications, test in program:
            if enforce and decided:
                continue
            if methods is not None and facts.method not in methods:
                continue
            if applications is not None and facts.application not in applications:
                continue
            if test(facts):
                matched.append(name)
                if enforce:
                    decided = True
        key = tuple(matched)
        made = verdicts.get(key)
        return made if made is not None else of(key)

    return judge


def of_decision(decision: Decision) -> Verdict:
    """The verdict a traced decision holds."""
    matched = tuple(entry.rule for entry in decision.trace if entry.matched)
    return Verdict(decision.action, decision.rule, matched)
