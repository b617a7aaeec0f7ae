"""Keeping the hourly statistics rollup current: the app's background roller and the CLI.

Stats queries refresh the hours they read anyway, so this only moves that work off the first
query after an hour settles (or after an upgrade, when nothing is rolled yet).

The app rolls apart from its writer (`refresh_apart`): the hours' aggregates are read on
the reader, and the writer only stores them, in short transactions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.periodic import every
from app.store import stats_rollup as store
from app.store import stats_rollup_apart as apart

log = structlog.get_logger()

PASSES = 2  # reads of an hour a late write may overtake before the writer rolls it itself
READ_HOURS = 24  # hours planned together: their states read in one reader's transaction
STORE_ROWS = 5_000  # rollup rows stored in one writer's transaction (tens of milliseconds)
# After each read, a rest as long as the read took: an attack's hour (5 s of a core) reads
# over twice that, leaving the request path the CPU it needs on a small machine.
REST = 1.0


async def roll_settled(writer: AsyncEngine, reader: AsyncEngine, *, now: datetime) -> int:
    """Roll every settled hour not rolled yet, and the dirty ones, apart from the writer;
    returns the hours rolled."""
    async with reader.connect() as conn:
        earliest = await store.earliest_request(conn)
    if earliest is None:
        return 0
    since, until = store.floor_hour(earliest), store.settled_until(now)
    return await refresh_apart(writer, reader, since, until)


async def refresh_apart(
    writer: AsyncEngine, reader: AsyncEngine, since: datetime, until: datetime
) -> int:
    """`store.refresh` of [since, until), its reading on the reader: the writer is held only
    to store the aggregates, STORE_ROWS rows at a time. Returns the hours rolled.

    Hours are taken READ_HOURS at a time: their states read, then their verifications in
    reads of about SLICE_ROWS, each a short transaction of its own followed by a rest as
    long (store/stats_rollup_apart.py says why). An hour a late write changed while it was
    read is read again; after PASSES the writer rolls what is left itself (as
    `store.refresh` does), so that the rollup is exact when this returns, as a stats read
    that follows expects."""
    rolled = 0
    for _ in range(PASSES):
        async with reader.connect() as conn:
            wanted = await apart.pending(conn, since, until)
        if not wanted:
            return rolled
        for start in range(0, len(wanted), READ_HOURS):
            reads = await _read(reader, wanted[start : start + READ_HOURS])
            for batch in apart.batches(reads, STORE_ROWS):
                async with writer.begin() as conn:
                    rolled += await apart.store_hours(conn, batch)
    async with writer.begin() as conn:
        return rolled + await store.refresh(conn, since, until)


async def _read(reader: AsyncEngine, hours: list[datetime]) -> list[apart.RolledHour]:
    """The hours' states first; then which have verifications, how many, and those read
    in pieces of about SLICE_ROWS: each a short reader's transaction."""
    async with reader.connect() as conn:
        reads = await apart.read_states(conn, hours)
        busy = await apart.occupied(conn, [read.hour for read in reads])
    counts: dict[datetime, int] = {}
    for hour in busy:
        async with reader.connect() as conn:
            counts[hour] = await apart.count_hour(conn, hour)
    by_hour = {read.hour: read for read in reads}
    for since, until in apart.pieces(counts):
        started = time.monotonic()
        async with reader.connect() as conn:
            await apart.read_piece(conn, by_hour, since, until)
        await asyncio.sleep((time.monotonic() - started) * REST)
    return reads


async def run_periodically(
    writer: AsyncEngine,
    reader: AsyncEngine,
    *,
    interval: float,
    now: Callable[[], datetime],
    paused: Callable[[], bool],
    busy: Callable[[], bool] | None = None,
) -> None:
    """The app's roller: every `interval` seconds, unless the database is down; with `busy`,
    waiting out a burst of request events (services/periodic.py `every`)."""

    async def roll() -> None:
        rolled = await roll_settled(writer, reader, now=now())
        if rolled:
            log.info("stats.rolled", hours=rolled)

    await every(interval, roll, paused=paused, failed="stats.rollup_failed", busy=busy)
