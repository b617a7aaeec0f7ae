"""Named lists compiled for lookup: value -> expiry, matched exactly or by prefix."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.rules.model import ListEntry, NamedList


@dataclass(frozen=True, slots=True)
class CompiledList:
    """Entries by value; an expiry of None never expires. Prefix lists match any prefix."""

    name: str
    kind: str
    entries: Mapping[str, datetime | None]

    def match(self, number: str | None, now: datetime) -> str | None:
        """The entry that `number` matches and that has not expired, or None."""
        if number is None or not self.entries:
            return None
        if self.kind == "number":
            return number if self._active(number, now) else None
        for end in range(len(number), 1, -1):
            if self._active(number[:end], now):
                return number[:end]
        return None

    def _active(self, value: str, now: datetime) -> bool:
        if value not in self.entries:
            return False
        expires = self.entries[value]
        return expires is None or expires > now


def compile_list(
    named: NamedList, *, grown_from: tuple[NamedList, CompiledList] | None = None
) -> CompiledList:
    """Duplicate values keep the longest-lived entry. `grown_from`: a list compiled before;
    if `named` holds its very entries and then more (a list that gained entries), its lookup
    is copied and only the entries after them are added (the same lookup: which entry lives
    longest does not depend on their order)."""
    entries: dict[str, datetime | None] = {}
    rest: Sequence[ListEntry] = named.entries
    if grown_from is not None:
        before, compiled = grown_from
        held = len(before.entries)
        if (
            before.kind == named.kind
            and held <= len(named.entries)
            and all(map(operator.is_, before.entries, named.entries[:held]))
        ):
            entries, rest = dict(compiled.entries), named.entries[held:]
    for entry in rest:
        value, expires = entry.value, entry.expires_at
        entries[value] = _later(entries[value], expires) if value in entries else expires
    return CompiledList(named.name, named.kind, entries)


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    return None if first is None or second is None else max(first, second)
