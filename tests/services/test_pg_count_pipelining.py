"""Counting batches on PostgreSQL pipelined (intake/lanes.py, PgBatches._count_batch).

Two counting batches may be in flight at once: each statement commits alone, so a second
one is sent while the first is still being counted, and either waits for the other only
where they share a counter row. A batch counting in a later bucket waits for those in
flight in an earlier one (it reads their bucket as older, from its snapshot).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.intake.lanes import PgBatches, _Queued
from app.store.base import create_engine
from app.store.counter_model import BucketClock, CounterDeltas, Reads, Totals, WindowQuery
from app.store.held import HeldConnections
from app.store.pg_batch_count import CountItem
from tests.conftest import _truncate

pytestmark = pytest.mark.postgres

CLOCK = BucketClock(60)
NOW = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)


def _attempt(key: str, now: datetime) -> tuple[CountItem, WindowQuery]:
    query = WindowQuery(key, 3600, "attempts")
    changes = (CounterDeltas((key,), CLOCK.bucket(now), {"attempts": 1}),)
    return CountItem(changes, Reads([query], now), 0), query


@pytest.fixture
async def lane(postgres_database: str) -> AsyncIterator[PgBatches]:
    await _truncate(postgres_database)
    engine = create_engine(postgres_database, autocommit=True)
    held = HeldConnections(engine, 4)
    batches = PgBatches(held.lend, CLOCK)
    try:
        yield batches
    finally:
        await batches.close()
        await held.close()
        await engine.dispose()


@pytest.fixture
async def locker(postgres_database: str) -> AsyncIterator[AsyncConnection]:
    """A connection that holds row locks on `counters` until the test commits."""
    engine = create_engine(postgres_database)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


def _count(lane: PgBatches, item: CountItem) -> asyncio.Task[Totals | object | None]:
    return asyncio.create_task(lane.counts.submit(_Queued(item, asyncio.Event())))


async def _lock(lane: PgBatches, locker: AsyncConnection, item: CountItem) -> None:
    """Count `item` once (its row exists), then lock the row from another transaction."""
    assert await _count(lane, item) is not None
    key = item.changes[0].keys[0]
    await locker.execute(text("SELECT 1 FROM counters WHERE key = :k FOR UPDATE"), {"k": key})


async def _first(lane: PgBatches, item: CountItem) -> asyncio.Task[Totals | object | None]:
    """`item` counted, once its batch is being written (to wait on the lock)."""
    started = asyncio.Event()
    lane.counts.on_batch = lambda size: started.set()
    counting = _count(lane, item)
    await started.wait()
    return counting


async def test_a_second_batch_is_counted_while_the_first_waits(
    lane: PgBatches, locker: AsyncConnection
) -> None:
    blocked, blocked_query = _attempt("number:+46700000001", NOW)
    free, free_query = _attempt("number:+46700000002", NOW)
    await _lock(lane, locker, blocked)
    first = await _first(lane, blocked)
    # One batch at a time, this one would wait for the blocked one: never, here.
    second = await asyncio.wait_for(_count(lane, free), timeout=30)
    assert not first.done()
    await locker.commit()
    assert await first == {blocked_query: 2}
    assert second == {free_query: 1}


async def test_a_batch_in_a_later_bucket_waits_for_one_counting_in_an_earlier(
    lane: PgBatches, locker: AsyncConnection
) -> None:
    earlier, _ = _attempt("number:+46700000001", NOW)
    later, later_query = _attempt("number:+46700000001", NOW + timedelta(minutes=1))
    await _lock(lane, locker, earlier)
    first = await _first(lane, earlier)
    second = _count(lane, later)
    # Counted now, its window would read the earlier bucket without the first batch's
    # attempt (not committed yet): give it the time to do so.
    await asyncio.wait({second}, timeout=1.0)
    assert not second.done()
    await locker.commit()
    await first
    assert await second == {later_query: 3}  # the locked row's attempt, the first's, its own
