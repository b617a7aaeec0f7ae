"""The Decision: what was answered, which rule decided, shadow matches and the trace.

It is stored as-is (`model_dump(mode="json")`), so it must stay JSON-able and replayable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ConfigDict, Field

from app.rules.conditions import Frozen
from app.rules.model import Action, AnswerOverrides

DecidedBy = Literal["enforce", "default", "fallback"]


# The trace records are plain slotted dataclasses, not models: the engine builds ~45 per
# decision from its own values, and a model (even through model_construct) cost ~5x as much.
# Not frozen either: a frozen dataclass's __init__ sets each field through
# object.__setattr__, ~4x the cost of a plain one (~30 µs of a starter decision). Nothing
# changes a record once built; the Decision holding them is frozen.
# Pydantic still validates them when a stored decision is read, and serializes them.
_TRACE_CONFIG = ConfigDict(extra="forbid")


@dataclass(slots=True)
class ConditionTrace:
    """One condition as evaluated: held or not, the actual value against the expected one."""

    __pydantic_config__ = _TRACE_CONFIG

    condition: str
    held: bool
    text: str
    # JSON values the engine made (render.as_json); typed Any, as pydantic checks a JsonValue
    # against every JSON type each time it serializes one.
    actual: Any = None
    expected: Any = None
    depth: int = 0


@dataclass(slots=True)
class TraceEntry:
    """One rule as evaluated (or skipped because the attempt was out of its scope)."""

    __pydantic_config__ = _TRACE_CONFIG

    rule: str
    mode: Literal["enforce", "shadow"]
    matched: bool
    rule_id: int | None = None
    skipped: str | None = None
    conditions: list[ConditionTrace] = field(default_factory=list)


class RuleMatch(Frozen):
    """A rule that matched; for shadow rules, what it would have answered."""

    rule: str
    rule_id: int | None = None
    rule_revision: int | None = None
    action: Action
    reason: str


class Decision(Frozen):
    """The engine's answer for one attempt; `mode` says what decided it."""

    action: Action
    reason: str
    mode: DecidedBy
    rule: str | None = None
    rule_id: int | None = None
    rule_revision: int | None = None
    answer: AnswerOverrides | None = None
    shadow: list[RuleMatch] = Field(default_factory=list)
    trace: list[TraceEntry] = Field(default_factory=list)
    aggregates: dict[str, float] = Field(default_factory=dict)
    policy_version: int | str | None = None

    @classmethod
    def fallback(cls, action: Action, reason: str = "fallback") -> Decision:
        """The decision recorded when the engine could not run (internal failure, deadline)."""
        return cls(action=action, reason=reason, mode="fallback")
