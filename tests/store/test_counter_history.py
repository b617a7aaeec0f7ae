"""Counting cost does not grow with history: window reads are index range scans.

With 150k stored counter rows (old buckets, other keys), the plan for reading a key's
windows must search the (key, bucket) primary key, never scan the table.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.base import create_engine
from app.store.counter_model import Attempt, Reads, WindowQuery
from app.store.counters import SqlCounters, counters

HISTORY_KEYS = 1_500
HISTORY_BUCKETS = 100


async def _fill_history(engine: AsyncEngine, now: datetime) -> None:
    clock = SqlCounters(60).clock
    current = clock.bucket(now)
    rows: list[dict[str, Any]] = []
    async with engine.begin() as conn:
        for k in range(HISTORY_KEYS):
            for b in range(HISTORY_BUCKETS):
                rows.append(
                    {"key": f"number:+4670{k:07d}", "bucket": current - 60 * (b + 1), "attempts": 1}
                )
            if len(rows) >= 30_000:
                await conn.execute(insert(counters), rows)
                rows.clear()
        if rows:
            await conn.execute(insert(counters), rows)
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE counters"))


def _window_read_sql(dialect: str, now: datetime) -> str:
    current = SqlCounters(60).clock.bucket(now)
    where = (
        "key IN ('number:+46700000007', 'country:SE') "
        f"AND bucket >= {current - 3600} AND bucket < {current}"
    )
    if dialect == "postgresql":
        return f"EXPLAIN SELECT key, sum(attempts) FROM counters WHERE {where} GROUP BY key"
    return f"EXPLAIN QUERY PLAN SELECT key, sum(attempts) FROM counters WHERE {where} GROUP BY key"


async def _check(url: str) -> tuple[str, dict[str, float]]:
    engine = create_engine(url)
    now = datetime.now(UTC)
    await _fill_history(engine, now)
    async with engine.begin() as conn:
        plan = "\n".join(
            str(row) for row in await conn.execute(text(_window_read_sql(conn.dialect.name, now)))
        )
        sql = SqlCounters(60)
        queries = [WindowQuery("number:+46700000007", 3600, "attempts")]
        attempt = Attempt.of({"number:+46700000007"}, set(), clock=sql.clock, now=now, spend=0)
        values = await sql.observe(conn, attempt.counted(), Reads(queries, now))
    await engine.dispose()
    assert values is not None
    return plan, {q.key: v for q, v in values.items()}


def test_window_reads_use_the_primary_key_with_150k_rows_of_history(database_url: str) -> None:
    plan, values = asyncio.run(_check(database_url))
    assert "Seq Scan" not in plan, plan
    assert "SCAN counters" not in plan.replace("SCAN counters USING", ""), plan
    assert "pk_counters" in plan or "USING INDEX sqlite_autoindex_counters_1 (key=?" in plan, plan
    # 59 older buckets of the last hour hold one attempt each, plus this attempt.
    assert values == {"number:+46700000007": 60}
