"""Keeping the hourly statistics rollup current: the app's background roller and the CLI.

Stats queries refresh the hours they read anyway, so this only moves that work off the first
query after an hour settles (or after an upgrade, when nothing is rolled yet).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.periodic import every
from app.store import stats_rollup as store

log = structlog.get_logger()


async def roll_settled(conn: AsyncConnection, *, now: datetime) -> int:
    """Roll every settled hour not rolled yet, and the dirty ones; returns the hours rolled."""
    earliest = await store.earliest_request(conn)
    if earliest is None:
        return 0
    return await store.refresh(conn, store.floor_hour(earliest), store.settled_until(now))


async def run_periodically(
    engine: AsyncEngine,
    *,
    interval: float,
    now: Callable[[], datetime],
    paused: Callable[[], bool],
) -> None:
    """The app's roller: every `interval` seconds, unless the database is down."""

    async def roll() -> None:
        async with engine.begin() as conn:
            rolled = await roll_settled(conn, now=now())
        if rolled:
            log.info("stats.rolled", hours=rolled)

    await every(interval, roll, paused=paused, failed="stats.rollup_failed")
