"""Named lists compiled for lookup: value -> expiry, matched exactly or by prefix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from app.rules.model import NamedList


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


def compile_list(named: NamedList) -> CompiledList:
    """Duplicate values keep the longest-lived entry."""
    entries: dict[str, datetime | None] = {}
    for entry in named.entries:
        value, expires = entry.value, entry.expires_at
        entries[value] = _later(entries[value], expires) if value in entries else expires
    return CompiledList(named.name, named.kind, entries)


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    return None if first is None or second is None else max(first, second)
