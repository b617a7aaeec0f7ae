"""Retention's reads follow what is old, not the tables' size: with nothing to purge or to
anonymise, selecting the old verifications and callbacks examines at most the rows of the
tables' last block range, the one still filling that vacuum leaves unsummarised (PostgreSQL:
the block-range indexes of migration 0010; before them, both tables were read whole at
every hourly run: 20,000 rows each statement here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.audit import retention
from app.store import retention as store
from tests.support import engine_on_empty

pytestmark = pytest.mark.postgres
ROWS = 20_000

SEED = """
WITH r AS (
  SELECT g, CAST(:start AS timestamptz) + make_interval(secs => g / 300.0) AS at,
         md5(g::text)::uuid::text AS id
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
), q AS (
  INSERT INTO callbacks (received_at, event, verification_id, dedupe_key, signature,
                         http_status, raw_body)
  SELECT at, 'VerificationRequestEvent', id, 'q' || id, 'valid', 200, '\\x'::bytea FROM r
  RETURNING id AS callback_id, verification_id
)
INSERT INTO verifications (id, created_at, requested_at, number, country, action,
                           request_callback_id, shadow_deny, degraded)
SELECT r.id, r.at, r.at, '+4670' || lpad(r.g::text, 7, '0') || :mark, 'SE', 'allow',
       q.callback_id,
       false, false
FROM r JOIN q ON q.verification_id = r.id ORDER BY r.g  -- in time order, as the app stores
"""
EXAMINED = """
SELECT relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS examined
FROM pg_stat_xact_user_tables WHERE relname IN ('verifications', 'callbacks')
"""


async def _seed(
    conn: AsyncConnection, start: datetime, first: int, last: int, mark: str = ""
) -> None:
    params = {"start": start, "first": first, "last": last, "mark": mark}
    await conn.execute(text(SEED), params)


async def _vacuum(engine: AsyncEngine) -> None:
    """What autovacuum does soon after a table grows (and what summarises new ranges)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE verifications, callbacks"))


async def _examined(conn: AsyncConnection) -> dict[str, int]:
    return {r.relname: int(r.examined) for r in await conn.execute(text(EXAMINED))}


@pytest.fixture
async def engine(postgres_database: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database with both tables empty, emptied again after."""
    async with engine_on_empty(postgres_database, "verifications, callbacks CASCADE") as engine:
        yield engine


async def _examined_by_old_selections(engine: AsyncEngine, before: datetime) -> dict[str, int]:
    """Rows of each table examined by selecting the old verifications and callbacks (both
    finding none)."""
    async with engine.connect() as conn:
        start = await _examined(conn)
        assert await store.old_verifications(conn, before, 1000) == []
        assert await store.old_callbacks(conn, before, 1000) == []
        examined = await _examined(conn)
    return {name: examined.get(name, 0) - start.get(name, 0) for name in examined}


async def test_selecting_old_rows_examines_none_when_nothing_is_old(
    engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await _seed(conn, now - timedelta(hours=1), 1, ROWS)
    await _vacuum(engine)
    before = now - timedelta(days=30)
    grown = await _examined_by_old_selections(engine, before)
    async with engine.connect() as conn:
        start = await _examined(conn)
        assert await store.numbers_to_anonymize(conn, before, 500) == []
        examined = await _examined(conn)
    grown["verifications"] += examined["verifications"] - start.get("verifications", 0)
    # Each statement at most the last range of 128 pages: ~3,400 verifications (two
    # statements read them), ~1,200 callbacks here.
    assert grown["verifications"] < 2 * ROWS // 4
    assert grown["callbacks"] < ROWS // 4


async def test_periodic_anonymizing_reads_from_its_watermark_and_misses_nothing(
    engine: AsyncEngine,
) -> None:
    """The task's second run reads the verifications created since its first run's
    threshold (less the margin), not the anonymised history before it; and what it leaves
    is what a full pass leaves: no number older than the threshold."""
    now = datetime.now(UTC)
    older = timedelta(days=30)
    async with engine.begin() as conn:
        # Anonymised long ago: the history a full pass reads again every time.
        await _seed(conn, now - timedelta(days=40), 1, ROWS, mark="#0")
        # Old at the first run, and the ones that get old between the two runs.
        await _seed(conn, now - timedelta(days=30, hours=2), ROWS + 1, ROWS + 100)
        await _seed(conn, now - timedelta(days=30) + timedelta(minutes=10), ROWS + 101, ROWS + 200)
    await _vacuum(engine)
    watermark = retention.Watermark()
    first = now
    assert watermark.since(first) is None  # the first run is a full pass
    done = await retention.anonymize(engine, older_than=older, key=b"k", now=first)
    watermark.ran(first, first - older, None)
    assert done == 100
    second = first + timedelta(hours=1)
    since = watermark.since(second)
    assert since == first - older - retention.Watermark.MARGIN
    async with engine.connect() as conn:
        start = await _examined(conn)
        rows = await store.numbers_to_anonymize(conn, second - older, 500, since)
        examined = await _examined(conn)
    assert len(rows) == 100
    assert examined["verifications"] - start.get("verifications", 0) < ROWS // 4
    done = await retention.anonymize(engine, older_than=older, key=b"k", now=second, since=since)
    assert done == 100
    async with engine.connect() as conn:
        assert await store.count_to_anonymize(conn, second - older) == 0


async def test_a_purge_leaves_no_stale_range_for_the_next_selection(engine: AsyncEngine) -> None:
    """Purged rows' pages refilled with new rows (after the vacuum the purge brings) are not
    read by the next selection of old rows: the purge forgot those ranges' summaries, which
    otherwise still claimed the purged times (every range, once retention has cycled)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await _seed(conn, now - timedelta(days=100), 1, ROWS)
    await _vacuum(engine)
    purged = await retention.purge(
        engine, older_than=timedelta(days=90), counter_retention=timedelta(days=8), now=now
    )
    assert purged.rows["verifications"] == ROWS
    await _vacuum(engine)  # as autovacuum after the purge's deletes: the space is free
    async with engine.begin() as conn:
        await _seed(conn, now - timedelta(hours=1), ROWS + 1, 2 * ROWS)
    await _vacuum(engine)
    grown = await _examined_by_old_selections(engine, now - timedelta(days=90))
    assert grown["verifications"] < ROWS // 4
    assert grown["callbacks"] < ROWS // 4


async def test_a_purge_summarises_new_ranges_itself(engine: AsyncEngine) -> None:
    """With autovacuum off or behind, no vacuum summarises the ranges filled since the last
    run; the purge does it first, so its selections read only the last range, not every
    range added since (20,000 rows examined without it)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await _seed(conn, now - timedelta(hours=1), 1, ROWS)
    async with engine.begin() as conn:
        assert await store.summarize_new_ranges(conn) > 0
    grown = await _examined_by_old_selections(engine, now - timedelta(days=30))
    assert grown["verifications"] < ROWS // 4
    assert grown["callbacks"] < ROWS // 4
    async with engine.begin() as conn:
        assert await store.summarize_new_ranges(conn) == 0  # nothing new since
