"""Autovacuum's ANALYZE of the two append-only tables samples at most 3,000 rows (migration
0012: statistics target 10 on each of their columns), whatever their size; with the
default target it read 30,000 rows from up to as many pages, about once a minute while the
tables are young, and the soak's p99 rose with it (docs/operations.md, "Autovacuum's
ANALYZE of the append-only tables")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped]
import pytest

from bench.baseline_refresh import SEED

ROWS = 4_000  # more than the sample: with the default target all of them would be in it
SAMPLE = re.compile(r"(\d+) rows in sample")


async def _sample_rows(conn: asyncpg.Connection, table: str) -> int:
    found: list[str] = []
    conn.add_log_listener(lambda _conn, message: found.append(str(message)))
    await conn.execute(f"ANALYZE VERBOSE {table}")
    samples = [int(m[1]) for text in found if (m := SAMPLE.search(text))]
    assert samples, found
    return max(samples)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("table", ["callbacks", "verifications"])
async def test_analyze_samples_at_most_3000_rows(database_url: str, table: str) -> None:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        seed = SEED
        for i, name in enumerate(("start", "rate", "first", "last"), start=1):
            seed = seed.replace(f"CAST(:{name} ", f"CAST(${i} ")
        await conn.execute(seed, datetime(2026, 12, 5, tzinfo=UTC), 300.0, 1, ROWS)
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") >= ROWS
        assert await _sample_rows(conn, table) <= 3_000
    finally:
        await conn.close()
