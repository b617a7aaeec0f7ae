"""Named lists and their entries in SQL: create, delete, upsert and remove entries in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.policy import entries, lists
from app.store.upsert import insert_for

CHUNK = 500  # rows per statement: stays below SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True, kw_only=True)
class ListInfo:
    """A named list as stored (without its entries)."""

    id: int
    name: str
    kind: str
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ListWithCounts:
    """A named list with its number of entries, and of entries not yet expired."""

    name: str
    kind: str
    description: str
    created_at: datetime
    entries: int
    active_entries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEntry:
    """An entry to add, or to update by value."""

    value: str
    note: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEntry(NewEntry):
    """An entry as stored."""

    id: int
    list_id: int
    created_at: datetime
    created_by: str | None


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[start : start + CHUNK] for start in range(0, len(items), CHUNK)]


async def list_summaries(conn: AsyncConnection, *, now: datetime) -> list[ListWithCounts]:
    """Every list with its number of entries and of entries not yet expired."""
    live = or_(entries.c.expires_at.is_(None), entries.c.expires_at > now)
    stmt = (
        select(
            lists.c.name,
            lists.c.kind,
            lists.c.description,
            lists.c.created_at,
            func.count(entries.c.id).label("entries"),
            func.count(entries.c.id).filter(live).label("active_entries"),
        )
        .select_from(lists.outerjoin(entries, entries.c.list_id == lists.c.id))
        .group_by(lists.c.id)
        .order_by(lists.c.name)
    )
    return [ListWithCounts(**row) for row in (await conn.execute(stmt)).mappings()]


async def list_row(conn: AsyncConnection, name: str) -> ListInfo | None:
    row = (await conn.execute(select(lists).where(lists.c.name == name))).mappings().first()
    return ListInfo(**row) if row is not None else None


async def entry_rows(conn: AsyncConnection, list_id: int) -> list[StoredEntry]:
    stmt = select(entries).where(entries.c.list_id == list_id).order_by(entries.c.id)
    return [StoredEntry(**row) for row in (await conn.execute(stmt)).mappings()]


async def create_list(
    conn: AsyncConnection, *, name: str, kind: str, description: str, now: datetime
) -> int:
    stmt = insert(lists).values(name=name, kind=kind, description=description, created_at=now)
    return int((await conn.execute(stmt.returning(lists.c.id))).scalar_one())


async def delete_list(conn: AsyncConnection, list_id: int) -> None:
    await conn.execute(delete(entries).where(entries.c.list_id == list_id))
    await conn.execute(delete(lists).where(lists.c.id == list_id))


async def existing_values(conn: AsyncConnection, list_id: int, values: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(set(values))):
        stmt = select(entries.c.value).where(
            entries.c.list_id == list_id, entries.c.value.in_(chunk)
        )
        found.update((await conn.execute(stmt)).scalars())
    return found


async def upsert_entries(
    conn: AsyncConnection,
    list_id: int,
    rows: Sequence[NewEntry],
    *,
    now: datetime,
    actor: str | None,
) -> None:
    """Add entries; an existing value gets the new note and expiry."""
    added = {"list_id": list_id, "created_at": now, "created_by": actor}
    for chunk in _chunks(rows):
        stmt = insert_for(conn, entries).values(
            [{"value": r.value, "note": r.note, "expires_at": r.expires_at, **added} for r in chunk]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["list_id", "value"],
            set_={"note": stmt.excluded.note, "expires_at": stmt.excluded.expires_at},
        )
        await conn.execute(stmt)


async def delete_entries(conn: AsyncConnection, list_id: int, values: Sequence[str]) -> int:
    """Remove entries by value; returns how many existed."""
    removed = 0
    for chunk in _chunks(sorted(set(values))):
        stmt = delete(entries).where(and_(entries.c.list_id == list_id, entries.c.value.in_(chunk)))
        removed += int((await conn.execute(stmt)).rowcount)
    return removed
