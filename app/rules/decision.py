"""The Decision: what was answered, which rule decided, shadow matches and the trace.

It is stored as-is (`model_dump(mode="json")`), so it must stay JSON-able and replayable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter

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


class _Encoded:
    """A slot for a trace record's own JSON (`trace_json`), set when it is first encoded;
    b"" until then. Bytes, as pydantic writes them and the store sends them: no decoding
    and encoding again of text that holds non-ASCII. Not a dataclass field: pydantic
    neither validates nor serializes it. Set empty by `__post_init__` (the dataclass's
    `__init__` and pydantic's validation both call it): reading an unset slot raises an
    AttributeError, whose message cost ~2.3k instructions a new record (~24k an answer)
    under `getattr(…, None)`. `_entry` and `_record` set it in place (through a method,
    ~6k instructions an answer more); mypy does not see this slot from the dataclasses."""

    __slots__ = ("_json",)
    _json: bytes

    def __post_init__(self) -> None:
        self._json = b""


@dataclass(slots=True)
class ConditionTrace(_Encoded):
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
class TraceEntry(_Encoded):
    """One rule as evaluated (or skipped because the attempt was out of its scope)."""

    __pydantic_config__ = _TRACE_CONFIG

    rule: str
    mode: Literal["enforce", "shadow"]
    matched: bool
    rule_id: int | None = None
    skipped: str | None = None
    conditions: list[ConditionTrace] = field(default_factory=list)


# The trace as JSON text, the same text `Decision.model_dump_json` writes for it. The engine
# reuses a record (and an entry) for the same node (rule) and values read (nodes.py,
# engine.py), so each keeps its text once encoded and is spliced in each time it recurs:
# pydantic took ~7k instructions per record and per entry, ~80 % of a starter decision's
# encoding. The text is the object's own: a changed policy or value makes a new object,
# encoded anew; an object never changes once built. An entry's head (all but its
# conditions) is kept under its values, where they are of the declared types (as keys, 1
# and True, 1.0 and 1 are alike), at most _HEADS of them, then it starts over. The
# serializers are called as TypeAdapter.dump_json calls them, without the wrapper's keywords
# passed through: ~6.4k instructions less a record (~4 new records an answer).
_CONDITION_SERIALIZER = TypeAdapter(ConditionTrace).serializer
_ENTRY_SERIALIZER = TypeAdapter(TraceEntry).serializer
_HEADS = 4096
_heads: dict[tuple[Any, ...], bytes] = {}


def trace_json(trace: list[TraceEntry]) -> bytes:
    """`trace` as JSON (a list of entries, UTF-8), as `Decision.model_dump_json` encodes it."""
    return b"[%b]" % b",".join([entry._json or _entry(entry) for entry in trace])


def _entry(entry: TraceEntry) -> bytes:
    rule_id = entry.rule_id
    if entry.matched.__class__ is not bool or rule_id.__class__ not in (int, type(None)):
        head = None  # values not of the declared types (as keys, 1 and True are alike)
    else:
        key = (entry.rule, entry.mode, entry.matched, rule_id, entry.skipped)
        head = _heads.get(key) or _head(key, entry)
    if head is None:  # encoded as pydantic has it
        text = _ENTRY_SERIALIZER.to_json(entry)
    else:
        # Concatenated, and one condition (most rules have one) without a list: ~2k
        # instructions less a new entry (~6 an answer).
        conditions = entry.conditions
        if len(conditions) == 1:
            record = conditions[0]
            text = head + (record._json or _record(record)) + b"]}"
        else:
            text = head + b",".join([c._json or _record(c) for c in conditions]) + b"]}"
    entry._json = text  # type: ignore[misc]  # _Encoded's slot
    return text


def _record(record: ConditionTrace) -> bytes:
    record._json = text = _CONDITION_SERIALIZER.to_json(record)  # type: ignore[misc]
    return text


def _head(key: tuple[Any, ...], entry: TraceEntry) -> bytes | None:
    """`entry`'s text up to its conditions' (`{"rule":…,"conditions":[`), kept under `key`
    (its values: `_entry`), or None when its strings are not of the declared types."""
    rule, mode, skipped = entry.rule, entry.mode, entry.skipped
    if not (type(rule) is str and type(mode) is str and type(skipped) in (str, type(None))):
        return None
    bare = TraceEntry(rule, mode, entry.matched, entry.rule_id, skipped, [])
    head = _ENTRY_SERIALIZER.to_json(bare)[: -len(b"]}")]
    if len(_heads) >= _HEADS:
        _heads.clear()
    _heads[key] = head
    return head


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
