"""Rolling a settled hour apart from the writer: its aggregates read on a reader's
connection, then stored in a short transaction of the writer if the hour did not change.

`stats_rollup.refresh` aggregates with INSERT … SELECT in the writer's transaction. On
SQLite that transaction holds the one connection the request path writes through, and an
hour of a pumping attack (about a million verifications) takes seconds to aggregate: every
request event meanwhile would get the fallback answer. Here the reading is done on a
reader (`store/base.py` `create_reader`; PostgreSQL's pool), and the writer only stores
the result: a few hundred rows.

A late write to the hour between the read and the store (`stats_rollup.mark_late`: a
replayed request, a very late result) adds one to the hour's `version` in the same
transaction as the write. The hour's state is read before its aggregates, so any write the
aggregates miss moved the version after it was read; the store compares and, if it moved,
stores nothing (`store_hour` False) and the hour stays to be rolled again. Under READ
COMMITTED (PostgreSQL's default, a snapshot per statement) the order alone makes this hold:
a later statement sees at least what an earlier one saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import stats_rollup as rolling
from app.store.stats_rollup import HOUR, TABLES
from app.store.tables import range_rollup, rollup, shadow_rollup
from app.store.tables import rollup_hours as hours
from app.store.upsert import insert_for

Rows = list[dict[str, Any]]
_ROLLUP, _SHADOW, _RANGE = rolling.ROLLUP_NAMES, rolling.SHADOW_NAMES, rolling.RANGE_NAMES


@dataclass(frozen=True, slots=True)
class RolledHour:
    """An hour's aggregates as read, and the state they were read at (`version` None: the
    hour was never rolled)."""

    hour: datetime
    version: int | None
    rows: Rows
    shadow: Rows
    ranges: Rows


async def pending(conn: AsyncConnection, since: datetime, until: datetime) -> list[datetime]:
    """The hours of [since, until) to roll: dirty ones and those never rolled."""
    dirty = await rolling.dirty_hours(conn, since, until)
    return sorted({*dirty, *await rolling.missing_hours(conn, since, until)})


async def read_hour(conn: AsyncConnection, hour: datetime) -> RolledHour | None:
    """On a reader: the hour's state, then its aggregates; None: rolled and clean."""
    state = (
        await conn.execute(select(hours.c.dirty, hours.c.version).where(hours.c.hour == hour))
    ).one_or_none()
    if state is not None and not state.dirty:
        return None
    dialect, until = conn.dialect.name, hour + HOUR
    return RolledHour(
        hour=hour,
        version=None if state is None else int(state.version),
        rows=await _rows(conn, rolling.rollup_query(dialect, hour, until), _ROLLUP, hour),
        shadow=await _rows(conn, rolling.shadow_query(dialect, hour, until), _SHADOW, hour),
        ranges=await _rows(conn, rolling.range_query(dialect, hour, until), _RANGE, hour),
    )


async def store_hour(conn: AsyncConnection, read: RolledHour) -> bool:
    """On the writer: the hour's rollup replaced by `read`, if its state is still the one
    read; False: it changed meanwhile (or another refresh rolled it), nothing stored."""
    if not await _claim(conn, read):
        return False
    hour = read.hour
    for table in TABLES:
        await conn.execute(delete(table).where(table.c.hour == hour))
    for table, rows in (
        (rollup, read.rows),
        (shadow_rollup, read.shadow),
        (range_rollup, read.ranges),
    ):
        if rows:
            await conn.execute(insert(table), rows)
    await conn.execute(rolling.roll_country_statement(hour, hour + HOUR))
    return True


async def _claim(conn: AsyncConnection, read: RolledHour) -> bool:
    """Never rolled: the hour's row inserted (a concurrent refresh or late write that made
    one first wins). Dirty: made clean if its version is the one read."""
    if read.version is None:
        stmt: Any = (
            insert_for(conn, hours)
            .values(hour=read.hour, dirty=False)
            .on_conflict_do_nothing(index_elements=["hour"])
            .returning(hours.c.hour)
        )
    else:
        stmt = (
            update(hours)
            .where(
                hours.c.hour == read.hour,
                hours.c.dirty.is_(True),
                hours.c.version == read.version,
            )
            .values(dirty=False)
            .returning(hours.c.hour)
        )
    return (await conn.execute(stmt)).first() is not None


async def _rows(conn: AsyncConnection, query: Any, names: Sequence[str], hour: datetime) -> Rows:
    """The query's rows by column name. Each query is of one hour: its `hour` column (on
    SQLite the text the database computed) is replaced by that hour as a datetime."""
    return [
        dict(zip(names, row, strict=True)) | {"hour": hour} for row in await conn.execute(query)
    ]
