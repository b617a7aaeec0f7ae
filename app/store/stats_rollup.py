"""The hourly statistics rollup: `stats_hourly` rows derived from `verifications`.

An hour is rolled (aggregated once, per dimension) when a stats query or the background
roller first needs it, and only once it is settled: it ended more than SETTLE ago, when its
verifications have their results. `stats_hours` records which hours are rolled. A write that
touches an older verification (a replayed request, a very late result) marks its hour dirty,
and the next refresh rolls that hour again; a purge forgets the hours it reached.

The claim on an hour is its `stats_hours` row (INSERT … ON CONFLICT DO NOTHING), so two
workers refreshing at once never roll an hour twice.

Rolled with it, in the same statements' transaction: `stats_country_hourly` (stats_hourly
summed per country and currency) and `stats_range_hourly` (denied attempts per country and
ROLLED_RANGE_DIGITS-digit range), the narrow tables unfiltered windows (the console) read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.audit_stats import (
    MEASURES,
    ROLLED_RANGE_DIGITS,
    SHADOW_MEASURES,
    matched_with_verification,
    matched_within,
    measures,
    range_of,
    shadow_measures,
)
from app.store.tables import (
    country_rollup,
    matches,
    range_rollup,
    rollup,
    shadow_rollup,
    verifications,
)
from app.store.tables import rollup_hours as hours
from app.store.upsert import insert_for

SETTLE = timedelta(hours=1)  # an hour is rolled once it ended this long ago
LATE = timedelta(minutes=30)  # a write to a verification older than this marks its hour dirty
HOUR = timedelta(hours=1)
DIMENSIONS = (
    "app_key",
    "country",
    "method",
    "action",
    "reason",
    "rule_name",
    "decided_by",
    "status",
    "price_currency",
)
TABLES = (rollup, shadow_rollup, country_rollup, range_rollup)  # what rolling an hour writes


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


def settled_until(now: datetime) -> datetime:
    """Hours that end at or before this instant can be rolled."""
    return floor_hour(now - SETTLE)


async def mark_late(
    conn: AsyncConnection, requested_at: datetime | None, now: datetime | None = None
) -> None:
    """Called by every write of a verification; costs nothing unless the verification is old."""
    if requested_at is None or requested_at >= (now or datetime.now(UTC)) - LATE:
        return
    stmt = insert_for(conn, hours).values(hour=floor_hour(requested_at), dirty=True)
    bumped = {"dirty": True, "version": hours.c.version + 1}
    await conn.execute(stmt.on_conflict_do_update(index_elements=["hour"], set_=bumped))


async def forget_before(conn: AsyncConnection, before: datetime) -> None:
    """After a purge of rows created before `before`: those hours are rolled again on demand
    (from what is left). The margin covers rows requested a little after their creation."""
    edge = floor_hour(before) + 2 * HOUR
    for table in TABLES:
        await conn.execute(delete(table).where(table.c.hour < edge))
    await conn.execute(delete(hours).where(hours.c.hour < edge))


async def refresh(conn: AsyncConnection, since: datetime, until: datetime) -> int:
    """Make the rollup exact for the hours in [since, until) (hour-aligned, settled):
    roll dirty hours again and missing hours for the first time. Returns the hours rolled."""
    dirty = await _take_dirty(conn, since, until)
    if dirty:
        for table in TABLES:
            await conn.execute(delete(table).where(table.c.hour.in_(dirty)))
        await _roll(conn, dirty)
    claimed = await claim(conn, await missing_hours(conn, since, until))
    await _roll(conn, claimed)
    return len(dirty) + len(claimed)


async def missing_hours(conn: AsyncConnection, since: datetime, until: datetime) -> list[datetime]:
    """The hours in [since, until) with verifications and no `stats_hours` row (never rolled);
    two small reads when there is none, the usual case."""
    earliest = await earliest_request(conn)
    if earliest is None:
        return []
    start = max(since, floor_hour(earliest))
    if start >= until or await _count_hours(conn, start, until) == (until - start) // HOUR:
        return []
    known = await _known_hours(conn, start, until)
    return [hour for hour in _hours(start, until) if hour not in known]


async def dirty_hours(conn: AsyncConnection, since: datetime, until: datetime) -> list[datetime]:
    stmt = select(hours.c.hour).where(
        hours.c.dirty.is_(True), hours.c.hour >= since, hours.c.hour < until
    )
    return sorted((await conn.execute(stmt)).scalars())


async def earliest_request(
    conn: AsyncConnection, since: datetime | None = None, until: datetime | None = None
) -> datetime | None:
    """The first verification's request time (in [since, until) when given: one look-up in
    the time index)."""
    c = verifications.c
    stmt = select(func.min(c.requested_at))
    if since is not None:
        stmt = stmt.where(c.requested_at >= since)
    if until is not None:
        stmt = stmt.where(c.requested_at < until)
    value = (await conn.execute(stmt)).scalar()
    return None if value is None else as_utc(value)  # SQLite returns the aggregate untyped


def as_utc(value: datetime | str) -> datetime:
    """A time as read: PostgreSQL's aware datetime; SQLite's text or naive datetime, UTC."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def _take_dirty(conn: AsyncConnection, since: datetime, until: datetime) -> list[datetime]:
    stmt = (
        update(hours)
        .where(hours.c.dirty.is_(True), hours.c.hour >= since, hours.c.hour < until)
        .values(dirty=False)
        .returning(hours.c.hour)
    )
    return sorted((await conn.execute(stmt)).scalars())


async def _count_hours(conn: AsyncConnection, since: datetime, until: datetime) -> int:
    stmt = select(func.count()).where(hours.c.hour >= since, hours.c.hour < until)
    return int((await conn.execute(stmt)).scalar_one())


async def _known_hours(conn: AsyncConnection, since: datetime, until: datetime) -> set[datetime]:
    stmt = select(hours.c.hour).where(hours.c.hour >= since, hours.c.hour < until)
    return set((await conn.execute(stmt)).scalars())


async def claim(conn: AsyncConnection, wanted: Sequence[datetime]) -> list[datetime]:
    """Claim hours nobody rolled yet; a concurrent refresh waits here, then claims nothing."""
    claimed: list[datetime] = []
    for start in range(0, len(wanted), 1000):
        batch = [{"hour": hour, "dirty": False} for hour in wanted[start : start + 1000]]
        stmt = (
            insert_for(conn, hours)
            .values(batch)
            .on_conflict_do_nothing(index_elements=["hour"])
            .returning(hours.c.hour)
        )
        claimed.extend((await conn.execute(stmt)).scalars())
    return sorted(claimed)


async def _roll(conn: AsyncConnection, claimed: Sequence[datetime]) -> None:
    """Aggregate the verifications of the claimed hours, one statement per run of hours."""
    for since, until in runs(claimed):
        dialect = conn.dialect.name
        await conn.execute(
            insert(rollup).from_select(ROLLUP_NAMES, rollup_query(dialect, since, until))
        )
        shadow = shadow_query(dialect, since, until)
        await conn.execute(insert(shadow_rollup).from_select(SHADOW_NAMES, shadow))
        await conn.execute(roll_country_statement(since, until))
        ranges = range_query(dialect, since, until)
        await conn.execute(insert(range_rollup).from_select(RANGE_NAMES, ranges))


ROLLUP_NAMES = ["hour", *DIMENSIONS, *MEASURES]
SHADOW_NAMES = ["hour", "shadow_rule", *DIMENSIONS, *SHADOW_MEASURES]
RANGE_NAMES = ["hour", "country", "range", "denied"]


def rollup_query(dialect: str, since: datetime, until: datetime) -> Select[Any]:
    """`stats_hourly`'s rows of [since, until), in ROLLUP_NAMES' order."""
    c = verifications.c
    hour = _hour_of(dialect, c.requested_at).label("hour")
    dims = [c[name] for name in DIMENSIONS]
    return (
        select(hour, *dims, *measures(c))
        .where(c.requested_at >= since, c.requested_at < until)
        .group_by(hour, *dims)
    )


def shadow_query(dialect: str, since: datetime, until: datetime) -> Select[Any]:
    """`stats_shadow_hourly`'s rows of [since, until), in SHADOW_NAMES' order."""
    c, m = verifications.c, matches.c
    hour = _hour_of(dialect, c.requested_at).label("hour")
    dims = [c[name] for name in DIMENSIONS]
    return (
        select(hour, m.rule_name, *dims, *shadow_measures(c, m))
        .select_from(matched_with_verification())
        .where(c.requested_at >= since, c.requested_at < until, *matched_within(since, until))
        .group_by(hour, m.rule_name, *dims)
    )


def roll_country_statement(since: datetime, until: datetime) -> Any:
    """From the hours just rolled into stats_hourly (far fewer rows than the verifications)."""
    r = rollup.c
    keys = [r.hour, r.country, r.price_currency]
    sums = [func.sum(r[name]).label(name) for name in MEASURES]
    query = select(*keys, *sums).where(r.hour >= since, r.hour < until).group_by(*keys)
    names = ["hour", "country", "price_currency", *MEASURES]
    return insert(country_rollup).from_select(names, query)


def range_query(dialect: str, since: datetime, until: datetime) -> Select[Any]:
    """`stats_range_hourly`'s rows of [since, until), in RANGE_NAMES' order: denied rows
    only, read through the partial index on denied verifications."""
    c = verifications.c
    hour = _hour_of(dialect, c.requested_at).label("hour")
    prefix = range_of(c.number, ROLLED_RANGE_DIGITS).label("range")
    return (
        select(hour, c.country, prefix, func.count().label("denied"))
        .where(
            c.requested_at >= since,
            c.requested_at < until,
            # A literal, not a parameter, so that the partial index on denied rows applies.
            c.action == literal_column("'deny'"),
            c.number.is_not(None),
        )
        .group_by(hour, c.country, prefix)
    )


def _hour_of(dialect: str, at: ColumnElement[Any]) -> ColumnElement[Any]:
    """The start of the hour, in the column's own storage form (timestamptz; SQLite text)."""
    if dialect == "postgresql":
        return func.date_trunc(literal_column("'hour'"), at, literal_column("'UTC'"))
    return func.strftime(literal_column("'%Y-%m-%d %H:00:00.000000'"), at)


def _hours(since: datetime, until: datetime) -> Iterator[datetime]:
    hour = since
    while hour < until:
        yield hour
        hour += HOUR


def runs(sorted_hours: Sequence[datetime]) -> Iterator[tuple[datetime, datetime]]:
    """[(since, until)] covering consecutive hours."""
    runs: list[list[datetime]] = []
    for hour in sorted_hours:
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR
        else:
            runs.append([hour, hour + HOUR])
    return ((since, until) for since, until in runs)
