"""Active containments as the engine looks them up: one dict per key kind, no I/O.

Built by the shell from the stored containments (a background poll keeps the set current)
and attached to the compiled policy; checking an attempt is a few dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from app.rules.facts import Facts
from app.rules.lists import CompiledList


@dataclass(frozen=True, slots=True)
class Block:
    """One active containment: the exact key it blocks, why, and until when."""

    id: int
    alert: str | None
    key: str  # country | range | number | application
    value: str
    expires_at: datetime | None

    def describe(self) -> str:
        until = self.expires_at.isoformat() if self.expires_at else "lifted"
        by = f"alert {self.alert!r}" if self.alert else "an admin"
        return f"containment #{self.id} of {by} blocks {self.key} {self.value} until {until}"


@dataclass(frozen=True, slots=True)
class Containments:
    """Blocks by key kind; ranges by their prefix, matched against each prefix length held."""

    by_key: Mapping[str, Mapping[str, Block]] = field(default_factory=dict)
    range_lengths: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def covering(self, facts: Facts, now: datetime) -> Block | None:
        """The block covering this attempt that has not expired, if any."""
        for key, value in (
            ("number", facts.number),
            ("country", facts.country),
            ("application", facts.application),
        ):
            block = self._get(key, value, now)
            if block is not None:
                return block
        number = facts.number
        if number is not None:
            for length in self.range_lengths:
                block = self._get("range", number[:length], now)
                if block is not None:
                    return block
        return None

    def _get(self, key: str, value: str | None, now: datetime) -> Block | None:
        blocks = self.by_key.get(key)
        if not blocks or value is None:
            return None
        block = blocks.get(value)
        if block is None or (block.expires_at is not None and block.expires_at <= now):
            return None
        return block


NONE = Containments()


def compile_containments(blocks: Iterable[Block]) -> Containments:
    by_key: dict[str, dict[str, Block]] = {}
    for block in blocks:
        by_key.setdefault(block.key, {})[block.value] = block
    lengths = sorted({len(value) for value in by_key.get("range", {})}, reverse=True)
    return Containments(by_key=by_key, range_lengths=tuple(lengths))


def exempt(facts: Facts, lists: Mapping[str, CompiledList], names: Iterable[str]) -> str | None:
    """The list among `names` that holds this attempt's number (never contained), if any."""
    for name in names:
        compiled = lists.get(name)
        if compiled is not None and compiled.match(facts.number, facts.now) is not None:
            return name
    return None
