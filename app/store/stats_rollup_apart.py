"""Rolling settled hours apart from the writer: their aggregates read on a reader's
connection, then stored in short transactions of the writer, each hour if it did not change.

`stats_rollup.refresh` aggregates with INSERT … SELECT in the writer's transaction. On
SQLite that transaction holds the one connection the request path writes through, and an
hour of a pumping attack (about a million verifications) takes seconds to aggregate: every
request event meanwhile would get the fallback answer. Here the reading is done on a
reader (`store/base.py` `create_reader`; PostgreSQL's pool), and the writer only stores
the result: a few hundred rows an hour. Hours are read a run of consecutive ones per
statement (`read_hours`) and stored several per transaction (`store_hours`), so that the
thousands of empty hours an upgrade finds unrolled cost a few statements, not thousands.

A late write to the hour between the read and the store (`stats_rollup.mark_late`: a
replayed request, a very late result) adds one to the hour's `version` in the same
transaction as the write. The hour's state is read before its aggregates, so any write the
aggregates miss moved the version after it was read; the store compares and, if it moved,
stores nothing (`store_hour` False) and the hour stays to be rolled again. Under READ
COMMITTED (PostgreSQL's default, a snapshot per statement) the order alone makes this hold:
a later statement sees at least what an earlier one saw. Each hour is compared and stored
in one transaction: a failed comparison costs that hour, not its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import stats_rollup as rolling
from app.store.stats_rollup import HOUR, TABLES
from app.store.tables import range_rollup, rollup, shadow_rollup
from app.store.tables import rollup_hours as hours
from app.store.upsert import insert_for

Rows = list[tuple[Any, ...]]  # in the database's own forms: stored back as read
_QUERIES = (
    (rollup, rolling.rollup_query, rolling.ROLLUP_NAMES),
    (shadow_rollup, rolling.shadow_query, rolling.SHADOW_NAMES),
    (range_rollup, rolling.range_query, rolling.RANGE_NAMES),
)


@dataclass(frozen=True, slots=True)
class RolledHour:
    """An hour's aggregates as read, per rollup table, and the state they were read at
    (`version` None: the hour was never rolled)."""

    hour: datetime
    version: int | None
    rows: dict[str, Rows]

    @property
    def size(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


async def pending(conn: AsyncConnection, since: datetime, until: datetime) -> list[datetime]:
    """The hours of [since, until) to roll: dirty ones and those never rolled."""
    dirty = await rolling.dirty_hours(conn, since, until)
    missing = await rolling.missing_hours(conn, since, until)
    return sorted({_hour(hour) for hour in (*dirty, *missing)})


async def read_hours(conn: AsyncConnection, wanted: Sequence[datetime]) -> list[RolledHour]:
    """On a reader: the hours' states, then their aggregates, one statement per table and
    run of consecutive hours. Hours rolled and clean meanwhile are left out."""
    if not wanted:
        return []
    first, last = min(wanted), max(wanted) + HOUR
    stmt = select(hours.c.hour, hours.c.dirty, hours.c.version).where(
        hours.c.hour >= first, hours.c.hour < last
    )
    states = {_hour(r.hour): r for r in await conn.execute(stmt)}
    reads: dict[datetime, RolledHour] = {}
    for hour in sorted(wanted):
        state = states.get(hour)
        if state is None or state.dirty:
            version = None if state is None else int(state.version)
            reads[hour] = RolledHour(hour, version, {table.name: [] for table, _, _ in _QUERIES})
    dialect = conn.dialect.name
    for since, until in rolling.runs(sorted(reads)):
        for table, query, _ in _QUERIES:
            for row in await conn.execute(query(dialect, since, until)):
                reads[_hour(row[0])].rows[table.name].append(tuple(row))
    return list(reads.values())


def batches(reads: Sequence[RolledHour], rows: int) -> Iterator[list[RolledHour]]:
    """The reads in order, grouped into stores of about `rows` rows (an hour whole)."""
    batch: list[RolledHour] = []
    size = 0
    for read in reads:
        if batch and size + read.size > rows:
            yield batch
            batch, size = [], 0
        batch.append(read)
        size += read.size
    if batch:
        yield batch


async def store_hours(conn: AsyncConnection, reads: Sequence[RolledHour]) -> int:
    """On the writer: each hour's rollup replaced by its read, if the hour's state is still
    the one read; the others (a late write, or another refresh, came first) are left.
    Returns the hours stored."""
    stored = [read for read in reads if await _claim(conn, read)]
    claimed = [read.hour for read in stored]
    if not claimed:
        return 0
    for table in TABLES:
        await conn.execute(delete(table).where(table.c.hour.in_(claimed)))
    for table, _, names in _QUERIES:
        rows = [row for read in stored for row in read.rows[table.name]]
        if rows:
            sql, order = _insert(conn.dialect, table, names)
            if order != list(range(len(names))):
                rows = [tuple(row[i] for i in order) for row in rows]
            await conn.exec_driver_sql(sql, rows)
    for since, until in rolling.runs(claimed):
        await conn.execute(rolling.roll_country_statement(since, until))
    return len(claimed)


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


def _insert(dialect: Dialect, table: Table, names: Sequence[str]) -> tuple[str, list[int]]:
    """An INSERT of `names` for `exec_driver_sql`, and where each of its parameters is in a
    row of `names` (the dialect orders them as the table's columns). The rows are stored as
    read, in the database's own forms (SQLite's text for the hour), no value processed per
    row: an attack's hour is thousands of range rows, stored while the writer is held, and
    a typed insert held it about three times as long."""
    stmt = insert(table).inline().values({name: bindparam(name) for name in names})
    compiled = stmt.compile(dialect=dialect)
    return str(compiled), [list(names).index(name) for name in compiled.positiontup or ()]


def _hour(value: datetime | str) -> datetime:
    """An hour as read: PostgreSQL's aware datetime; SQLite's text or naive datetime, UTC."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
