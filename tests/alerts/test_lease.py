"""The job lease when its row is missing (a cleared table; the PostgreSQL test fixture
truncates it): a claimant that loses the race to create the row reads the row the winner
made, and so answers as it would had the row been there. The flake this pins down:
tests/alerts/test_containment.py's four concurrent evaluations on PostgreSQL, where a
`now + 5 s` call could create the row and both `now` calls then answered "not held"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.base import create_engine
from app.store.lease import claim, leases

NOW = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


async def _claim_and_commit(conn: AsyncConnection, holder: str) -> bool:
    held = await claim(conn, name="job", holder=holder, now=NOW, ttl=TTL)
    await conn.commit()
    return held


async def _until_waiting_for_a_lock(engine: AsyncEngine, pid: int) -> None:
    """Until backend `pid` waits on a lock (no timing assumed: it is watched doing so)."""
    query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
    async with engine.connect() as watcher:
        for _ in range(2000):
            if (await watcher.execute(query, {"pid": pid})).scalar() == "Lock":
                return
            await watcher.rollback()
            await asyncio.sleep(0.005)
    raise AssertionError("the second claim never waited for the first")


async def _race(engine: AsyncEngine, second_holder: str) -> tuple[bool, bool]:
    """Holder "a" creates the missing row and holds its transaction open while `second_holder`'s
    claim waits on it; then "a" commits."""
    async with engine.begin() as conn:
        await conn.execute(delete(leases))
    async with engine.connect() as first, engine.connect() as second:
        pid = (await second.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await second.commit()
        first_held = await claim(first, name="job", holder="a", now=NOW, ttl=TTL)
        waiting = asyncio.create_task(_claim_and_commit(second, second_holder))
        await _until_waiting_for_a_lock(engine, pid)
        await first.commit()
        return first_held, await waiting


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_claim_that_loses_the_race_to_create_the_row_reads_it_again(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        # The same holder (another of its own jobs) holds it; another holder does not.
        assert await _race(engine, "a") == (True, True)
        assert await _race(engine, "b") == (True, False)
    finally:
        await engine.dispose()
