"""A hot counter row (a country's, `global`'s current bucket) is never held while its
statement waits for another transaction.

The soak's fallback episode (docs/operations.md, "Soak"): a late decision's store statement
and the outcome batch (results and receipts of the same verification, store/pg_outcomes.py)
both write the verification's row. The store statement settled the attempt's counters first
(PostgreSQL runs a statement's unreferenced data-modifying CTEs last-written first), so while
it waited for the outcome batch's transaction it held the country's counter row, and every
request counting in that country queued behind it, past its deadline: more fallbacks, more
late decisions, more such waits. Real PostgreSQL: another transaction holds the
verification's row; counting in the same country must not wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store import pg_batch_store, pg_counters, pg_fastpath, pg_outcomes
from app.store.base import create_engine
from app.store.counter_model import CounterDeltas
from app.store.pg_outcomes import DELIVERY_COLUMNS
from app.store.rows import DeliveryRow, params
from tests.store.test_store_statement import CLAIM, REQUEST

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

HOT = "country:SE"
BUCKET = 42
SETTLE = CounterDeltas(keys=(HOT,), bucket=BUCKET, deltas={"allowed": -1})  # a denied one's
COUNT = CounterDeltas(keys=(HOT,), bucket=BUCKET, deltas={"attempts": 1, "allowed": 1})


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, autocommit=True, pool_size=3)
    yield engine
    await engine.dispose()


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _waiting_on_lock(conn: AsyncConnection, dsn: str, within: float = 5.0) -> None:
    pid = (await pg_fastpath.driver(conn)).get_server_pid()
    admin = await asyncpg.connect(dsn)
    try:
        for _ in range(int(within / 0.02)):
            kind = await admin.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
            )
            if kind == "Lock":
                return
            await asyncio.sleep(0.02)
    finally:
        await admin.close()
    raise AssertionError("the store statement never waited for the verification's row")


async def _store_one(conn: AsyncConnection, batched: bool) -> object:
    if batched:  # the request path's group commit: the same statement over arrays
        item = pg_batch_store.StoreItem(claim=CLAIM, verification=REQUEST, shadow=[], settle=SETTLE)
        return (await pg_batch_store.store_batch(conn, [item]))[0]
    return await pg_fastpath.store_decision(
        conn, claim=CLAIM, verification=REQUEST, shadow=[], settle=SETTLE
    )


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
async def test_a_store_waiting_for_its_verification_holds_no_counter_row(
    engine: AsyncEngine, database_url: str, batched: bool
) -> None:
    async with engine.connect() as setup:
        await pg_counters.apply(setup, [COUNT])  # the hot row exists, as it does under load
    # Another transaction (the outcome batch: a receipt of this verification) holds its row.
    other = await asyncpg.connect(_dsn(database_url))
    holding = other.transaction()
    await holding.start()
    now = datetime.now(UTC)
    receipt = params(
        DeliveryRow(id=REQUEST.id, created_at=now, sms_result="DELIVERED", sms_delivered_at=now)
    )
    await other.execute(pg_outcomes._delivery_sql(), *[[receipt[c]] for c in DELIVERY_COLUMNS])
    async with engine.connect() as late, engine.connect() as counting:
        store = asyncio.create_task(_store_one(late, batched))
        try:
            await _waiting_on_lock(late, _dsn(database_url))
            apg = await pg_fastpath.driver(counting)
            await apg.execute("SET lock_timeout = '1s'")
            # A request counting in the same country, meanwhile: no wait for the batch.
            await pg_counters.apply(counting, [COUNT])
            await apg.execute("RESET lock_timeout")
        finally:
            await holding.commit()
            await other.close()
        assert await store is not None, "stored once the other transaction committed"
        totals = await apg.fetchrow(
            "SELECT attempts, allowed FROM counters WHERE key = $1 AND bucket = $2",
            HOT,
            BUCKET,
        )
    assert dict(totals) == {"attempts": 2, "allowed": 1}  # two holds, one taken back
