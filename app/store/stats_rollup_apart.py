"""Rolling settled hours apart from the writer: their aggregates read on a reader's
connection, in slices, then stored in short transactions of the writer, each hour only if
it did not change meanwhile.

`stats_rollup.refresh` aggregates with INSERT … SELECT in the writer's transaction. On
SQLite that transaction holds the one connection the request path writes through, and an
hour of a pumping attack (about a million verifications) takes seconds to aggregate: every
request event meanwhile would get the fallback answer. Here the reading is done on a
reader (`store/base.py` `create_reader`; PostgreSQL's pool), and the writer only stores
the result: a few hundred rows an hour, a few thousand under a range-pumping attack.

The reads are short too. While a read transaction is open, SQLite cannot copy the
write-ahead log back past what it sees (docs/operations.md, "The stats rollup beside
SQLite's writer"): one five-second read let the log grow by 180,000 frames, and copying
them back afterwards stalled the writer. So the verifications are read about SLICE_ROWS at
a time (`pieces`: consecutive small hours together, a big hour in equal slices), each read
a transaction of its own, and the slices' counts and sums are added up here (every measure
is a count or a sum). The hours with verifications are found first by look-ups in the time
index (`occupied`), so the thousands of empty hours an upgrade finds unrolled cost a
statement or two.

A late write to an hour between its reads and its store (`stats_rollup.mark_late`: a
replayed request, a very late result) adds one to the hour's `version` in the same
transaction as the write. The hour's state is read before its slices, so any write a slice
misses moved the version after it was read; the store compares and, if it moved, stores
nothing for that hour (`store_hours`), and it stays to be rolled again. A slice may also see
a write the version read did not (a later snapshot): the comparison fails then too, and the
hour is read again, never stored stale. Each hour is compared and stored in one
transaction: a failed comparison costs that hour, not its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import stats_rollup as rolling
from app.store.stats_rollup import HOUR, TABLES
from app.store.tables import range_rollup, rollup, shadow_rollup, verifications
from app.store.tables import rollup_hours as hours

SLICE_ROWS = 100_000  # verifications per read at most (~0.5 s; an attack's hour: 10 reads)
Key = tuple[Any, ...]  # a rollup row's hour and dimensions, in the database's own forms
Sums = list[Any]  # its measures: counts and sums, None where a sum had no rows
# Each rollup table: its query, its columns (keys first), how many of them are keys.
_QUERIES = (
    (rollup, rolling.rollup_query, rolling.ROLLUP_NAMES, 1 + len(rolling.DIMENSIONS)),
    (shadow_rollup, rolling.shadow_query, rolling.SHADOW_NAMES, 2 + len(rolling.DIMENSIONS)),
    (range_rollup, rolling.range_query, rolling.RANGE_NAMES, 3),
)


@dataclass(slots=True)
class RolledHour:
    """An hour's aggregates as read so far, per rollup table, and the state they were read
    at (`version` None: the hour was never rolled)."""

    hour: datetime
    version: int | None
    rows: dict[str, dict[Key, Sums]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def add(self, table: str, row: Sequence[Any], keys: int) -> None:
        """One slice's row, added to the hour's row of the same keys."""
        kept = self.rows.setdefault(table, {})
        key, sums = tuple(row[:keys]), list(row[keys:])
        before = kept.get(key)
        if before is None:
            kept[key] = sums
            return
        for n, value in enumerate(sums):
            if value is not None:
                before[n] = value if before[n] is None else before[n] + value


async def pending(conn: AsyncConnection, since: datetime, until: datetime) -> list[datetime]:
    """The hours of [since, until) to roll: dirty ones and those never rolled."""
    dirty = await rolling.dirty_hours(conn, since, until)
    missing = await rolling.missing_hours(conn, since, until)
    return sorted({rolling.as_utc(hour) for hour in (*dirty, *missing)})


async def read_states(conn: AsyncConnection, wanted: Sequence[datetime]) -> list[RolledHour]:
    """On a reader, before any slice: the hours' states, nothing read yet. Hours rolled and
    clean meanwhile are left out."""
    if not wanted:
        return []
    stmt = select(hours.c.hour, hours.c.dirty, hours.c.version).where(
        hours.c.hour >= min(wanted), hours.c.hour < max(wanted) + HOUR
    )
    states = {rolling.as_utc(r.hour): r for r in await conn.execute(stmt)}
    reads: list[RolledHour] = []
    for hour in sorted(wanted):
        state = states.get(hour)
        if state is None or state.dirty:
            reads.append(RolledHour(hour, None if state is None else int(state.version)))
    return reads


async def occupied(conn: AsyncConnection, wanted: Sequence[datetime]) -> list[datetime]:
    """The hours of `wanted` with verifications: a look-up in the time index per hour with
    some (between `wanted`'s first and last), none per empty one."""
    if not wanted:
        return []
    wanted_set, last = set(wanted), max(wanted) + HOUR
    found: list[datetime] = []
    at: datetime | None = min(wanted)
    while at is not None and at < last:
        first = await rolling.earliest_request(conn, at, last)
        hour = None if first is None else rolling.floor_hour(first)
        if hour is not None and hour in wanted_set:
            found.append(hour)
        at = None if hour is None else hour + HOUR
    return found


async def count_hour(conn: AsyncConnection, hour: datetime) -> int:
    c = verifications.c
    stmt = select(func.count()).where(c.requested_at >= hour, c.requested_at < hour + HOUR)
    return int((await conn.execute(stmt)).scalar_one())


def pieces(counts: dict[datetime, int]) -> list[tuple[datetime, datetime]]:
    """The reads that cover the hours counted (in order), each of about SLICE_ROWS
    verifications at most: consecutive small hours together, a big one in equal slices."""
    out: list[tuple[datetime, datetime]] = []
    rows = 0
    for hour in sorted(counts):
        count = counts[hour]
        if count > SLICE_ROWS:
            parts = -(-count // SLICE_ROWS)
            step = HOUR / parts
            out += [(hour + step * n, hour + step * (n + 1)) for n in range(parts - 1)]
            out.append((hour + step * (parts - 1), hour + HOUR))
            rows = SLICE_ROWS  # nothing joins a slice
        elif out and out[-1][1] == hour and rows + count <= SLICE_ROWS:
            out[-1] = (out[-1][0], hour + HOUR)
            rows += count
        else:
            out.append((hour, hour + HOUR))
            rows = count
    return out


async def read_piece(
    conn: AsyncConnection, reads: dict[datetime, RolledHour], since: datetime, until: datetime
) -> None:
    """On a reader: the verifications of [since, until) (whole hours, or a slice of one),
    added to what was read of their hours."""
    dialect = conn.dialect.name
    for table, query, _, keys in _QUERIES:
        for row in await conn.execute(query(dialect, since, until)):
            read = reads.get(rolling.as_utc(row[0]))
            if read is not None:  # an hour rolled and clean meanwhile: not stored again
                read.add(table.name, row, keys)


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
    fresh = {
        rolling.as_utc(hour)
        for hour in await rolling.claim(conn, [r.hour for r in reads if r.version is None])
    }
    stored = [read for read in reads if read.hour in fresh or await _clean(conn, read)]
    claimed = [read.hour for read in stored]
    if not claimed:
        return 0
    for table in TABLES:
        await conn.execute(delete(table).where(table.c.hour.in_(claimed)))
    for table, _, names, _ in _QUERIES:
        rows = [
            (*key, *sums) for read in stored for key, sums in read.rows.get(table.name, {}).items()
        ]
        if rows:
            sql, order = _insert(conn.dialect, table, names)
            if order != list(range(len(names))):
                rows = [tuple(row[i] for i in order) for row in rows]
            await conn.exec_driver_sql(sql, rows)
    for since, until in rolling.runs(claimed):
        await conn.execute(rolling.roll_country_statement(since, until))
    return len(claimed)


async def _clean(conn: AsyncConnection, read: RolledHour) -> bool:
    """A dirty hour made clean, if its version is still the one read."""
    if read.version is None:
        return False  # never rolled, and `rolling.claim` found it taken
    stmt = (
        update(hours)
        .where(hours.c.hour == read.hour, hours.c.dirty.is_(True), hours.c.version == read.version)
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
