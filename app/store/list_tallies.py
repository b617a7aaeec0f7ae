"""Each list's entries summed up, so that a policy load reuses the lists that did not change
and reads only the entries added to those that grew (services/policy/held_lists.py).

A tally is an entry count, the last entry id, and the sum of each entry's term:
- on PostgreSQL the row's version (`xmin`), which any update of the row changes;
- on SQLite a number made of its id, its value's digits, its note's length and its expiry.
An unchanged list has the same tally. A list that only gained entries has its old tally
plus theirs (its entries above the old last id). Anything else (an entry removed or changed,
or added below the last id by a writer that committed late) gives another sum, and the list
is read again whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, cast, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.lists import ListInfo
from app.store.policy import entries, lists


@dataclass(frozen=True, slots=True)
class Tally:
    count: int = 0
    last_id: int = 0
    terms: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.count + other.count, max(self.last_id, other.last_id), self.terms + other.terms
        )

    @staticmethod
    def of(rows: Iterable[TalliedEntry]) -> Tally:
        count = last_id = terms = 0
        for row in rows:
            count += 1
            last_id = max(last_id, row.id)
            terms += row.term
        return Tally(count, last_id, terms)


@dataclass(frozen=True, slots=True)
class TalliedEntry:
    id: int
    list_id: int
    value: str
    note: str
    expires_at: datetime | None
    term: int


def _term(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return literal_column("xmin::text::bigint")
    digits = cast(func.substr(entries.c.value, 2), BigInteger) % 1_000_000_007
    expiry = func.coalesce(cast(func.strftime("%s", entries.c.expires_at), BigInteger), 0)
    return entries.c.id * 1_000_003 + digits + func.length(entries.c.note) * 31 + expiry


async def list_heads(conn: AsyncConnection) -> list[ListInfo]:
    """Every list without its entries, by name (as the policy holds them)."""
    rows = (await conn.execute(select(lists).order_by(lists.c.name))).mappings()
    return [ListInfo(**row) for row in rows]


async def tallies(conn: AsyncConnection) -> dict[int, Tally]:
    """Each list's tally, by list id (a list without entries: none)."""
    term = _term(conn.dialect.name)
    stmt = select(entries.c.list_id, func.count(), func.max(entries.c.id), func.sum(term)).group_by(
        entries.c.list_id
    )
    return {
        list_id: Tally(int(count), int(last_id), int(terms))
        for list_id, count, last_id, terms in (await conn.execute(stmt)).all()
    }


async def entries_since(conn: AsyncConnection, since: Mapping[int, int]) -> list[TalliedEntry]:
    """The entries of each list in `since` above its id there (0: all), in id order."""
    if not since:
        return []
    term = _term(conn.dialect.name)
    which = or_(
        *(
            and_(entries.c.list_id == list_id, entries.c.id > after)
            for list_id, after in since.items()
        )
    )
    columns = (
        entries.c.id,
        entries.c.list_id,
        entries.c.value,
        entries.c.note,
        entries.c.expires_at,
        term,
    )
    rows = (await conn.execute(select(*columns).where(which).order_by(entries.c.id))).all()
    return [
        TalliedEntry(id_, list_id, value, note, expires_at, int(term))
        for id_, list_id, value, note, expires_at, term in rows
    ]
