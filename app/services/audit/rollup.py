"""Keeping the hourly statistics rollup current: the app's background roller and the CLI.

Stats queries refresh the hours they read anyway, so this only moves that work off the first
query after an hour settles (or after an upgrade, when nothing is rolled yet).

The app rolls apart from its writer (`refresh_apart`): each hour's aggregates are read on
the reader, and the writer only stores them, in a short transaction per hour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.periodic import every
from app.store import stats_rollup as store
from app.store import stats_rollup_apart as apart

log = structlog.get_logger()

PASSES = 2  # reads of an hour a late write may overtake before the writer rolls it itself


async def roll_settled(conn: AsyncConnection, *, now: datetime) -> int:
    """Roll every settled hour not rolled yet, and the dirty ones; returns the hours rolled."""
    earliest = await store.earliest_request(conn)
    if earliest is None:
        return 0
    return await store.refresh(conn, store.floor_hour(earliest), store.settled_until(now))


async def refresh_apart(
    writer: AsyncEngine, reader: AsyncEngine, since: datetime, until: datetime
) -> int:
    """`store.refresh` of [since, until), its reading on the reader: the writer is held only
    to store each hour's few hundred rows. Returns the hours rolled.

    An hour a late write changed while it was read is read again; after PASSES the writer
    rolls what is left itself (as `store.refresh` does), so that the rollup is exact when
    this returns, as a stats read that follows expects."""
    rolled = 0
    for _ in range(PASSES):
        async with reader.connect() as conn:
            wanted = await apart.pending(conn, since, until)
        if not wanted:
            return rolled
        for hour in wanted:
            async with reader.connect() as conn:
                read = await apart.read_hour(conn, hour)
            if read is not None:
                async with writer.begin() as conn:
                    rolled += await apart.store_hour(conn, read)
    async with writer.begin() as conn:
        return rolled + await store.refresh(conn, since, until)


async def run_periodically(
    writer: AsyncEngine,
    reader: AsyncEngine,
    *,
    interval: float,
    now: Callable[[], datetime],
    paused: Callable[[], bool],
) -> None:
    """The app's roller: every `interval` seconds, unless the database is down."""

    async def roll() -> None:
        async with reader.connect() as conn:
            earliest = await store.earliest_request(conn)
        if earliest is None:
            return
        since, until = store.floor_hour(earliest), store.settled_until(now())
        rolled = await refresh_apart(writer, reader, since, until)
        if rolled:
            log.info("stats.rolled", hours=rolled)

    await every(interval, roll, paused=paused, failed="stats.rollup_failed")
