"""The counters' bucket and hour indexes are block ranges (PostgreSQL, migration 0011): a
new minute or hour row adds no index entry (a B-tree took one for each: 4 of the counting
statement's ~20 WAL records per request event), and retention's purge of old buckets still
reads what is old, not the whole table, also once purged pages hold new rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import retention as store
from tests.support import engine_on_empty

pytestmark = pytest.mark.postgres
KEYS = 20_000
MINUTE = 60

SEED = """
INSERT INTO counters (key, bucket, attempts, allowed, pending, spend_micros,
                      allowed_spend_micros, pending_spend_micros, successes)
SELECT 'number:+4670' || lpad(g::text, 7, '0'), CAST(:bucket AS bigint) + g / 1000 * 60,
       1, 0, 0, 0, 0, 0, 0
FROM generate_series(1, CAST(:keys AS bigint)) AS g ORDER BY g  -- in time order
"""
EXAMINED = """
SELECT relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS examined
FROM pg_stat_xact_user_tables WHERE relname IN ('counters', 'counter_hours')
"""
METHOD = """
SELECT i.relname, am.amname FROM pg_class i JOIN pg_am am ON am.oid = i.relam
WHERE i.relname IN ('ix_counters_bucket', 'ix_counter_hours_hour')
"""


@pytest.fixture
async def engine(postgres_database: str) -> AsyncIterator[AsyncEngine]:
    async with engine_on_empty(postgres_database, "counters, counter_hours") as engine:
        yield engine


async def _seed(engine: AsyncEngine, at: datetime) -> None:
    bucket = int(at.timestamp()) // MINUTE * MINUTE
    async with engine.begin() as conn:
        await conn.execute(text(SEED), {"bucket": bucket, "keys": KEYS})


async def _vacuum(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE counters, counter_hours"))


async def test_the_bucket_and_hour_indexes_are_block_ranges(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        found = dict((await conn.execute(text(METHOD))).tuples().all())
    assert found == {"ix_counters_bucket": "brin", "ix_counter_hours_hour": "brin"}


async def _examined_by_purge(engine: AsyncEngine, now: datetime) -> tuple[int, dict[str, int]]:
    """What retention's purge of the counters deleted from `counters`, and the rows it
    examined per table (under the plan a large table gets: no sequential scan)."""
    oldest = int((now - timedelta(days=8)).timestamp())
    async with engine.begin() as conn:
        await store.summarize_new_ranges(conn)  # as the purge does first
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        start = dict((await conn.execute(text(EXAMINED))).tuples().all())
        gone = await store.delete_counters(conn, oldest)
        await store.delete_counter_hours(conn, oldest)
        examined = dict((await conn.execute(text(EXAMINED))).tuples().all())
    return gone, {t: examined.get(t, 0) - start.get(t, 0) for t in examined}


async def test_a_counters_purge_reads_no_refilled_range(engine: AsyncEngine) -> None:
    """Purged minute rows' pages refilled with new ones (after the vacuum the purge brings)
    are not read by the next purge: the purge forgot those ranges' summaries, which would
    otherwise still claim the purged buckets (every range, once retention has cycled)."""
    now = datetime.now(UTC)
    await _seed(engine, now - timedelta(days=10))
    await _vacuum(engine)
    gone, _ = await _examined_by_purge(engine, now)
    assert gone == KEYS
    await _vacuum(engine)  # as autovacuum after the purge's deletes: the space is free
    await _seed(engine, now - timedelta(hours=1))
    await _vacuum(engine)
    gone, examined = await _examined_by_purge(engine, now)
    assert gone == 0
    assert examined.get("counters", 0) < KEYS // 4
    assert examined.get("counter_hours", 0) < KEYS // 4
