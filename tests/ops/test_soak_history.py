"""`bench.soak --history-hours`: before the load, the soak database's counters hold history
for the keys the soak's request events count (their countries and number ranges), so its
first minute reads windows as full as a long-running server's; and the per-minute cost
figures (CPU per request event of the server's PostgreSQL backends) see the server's
backends and not the soak's own connections. Real PostgreSQL; nothing timed."""

from __future__ import annotations

import asyncio
from itertools import islice

import asyncpg  # type: ignore[import-untyped]
import pytest

from bench import soak
from tests.conftest import _truncate

pytestmark = pytest.mark.postgres

EVENTS = 200


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _rows(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch("SELECT key, count(*) AS n FROM counters GROUP BY key")
    finally:
        await conn.close()
    return {r["key"]: r["n"] for r in found}


def test_history_fill_writes_an_hour_for_the_keys_of_the_soaks_request_events(
    postgres_database: str,
) -> None:
    asyncio.run(_truncate(postgres_database))
    dsn = _dsn(postgres_database)
    try:
        stored = asyncio.run(soak.fill_history(dsn, 1, EVENTS, 0))
        rows = asyncio.run(_rows(dsn))
    finally:
        asyncio.run(_truncate(postgres_database))
    events = list(islice(soak.request_events(), EVENTS))
    numbers = [e["identity"]["endpoint"] for e in events]
    # Every event's block of 1,000 numbers: a row per quarter hour of the hour.
    assert all(rows.get(f"range-3:{n[:-3]}") == 4 for n in numbers)
    # Every country of the soak's traffic (15, the catalog's LEGIT): a row per minute.
    countries = {k: v for k, v in rows.items() if k.startswith("country:")}
    assert len(countries) >= 10
    assert set(countries.values()) == {60}
    assert stored == sum(rows.values())


async def test_backend_cpu_counts_the_servers_backends_not_the_soaks_own(
    postgres_database: str,
) -> None:
    dsn = _dsn(postgres_database)
    own = await asyncpg.connect(dsn, server_settings={"application_name": soak.OWN})
    server = await asyncpg.connect(dsn)  # as the app's: no application_name of the soak's
    try:
        await server.fetchval("SELECT count(*) FROM generate_series(1, 100000)")
        usage = await soak._pg_cpu(own, cluster=False)
    finally:
        await own.close()
        await server.close()
    assert server.get_server_pid() in usage
    assert own.get_server_pid() not in usage
    row = soak.Minute(answered=4, server_cpu_s=0.02, pg_cpu_s=0.01).row(0)
    assert row["server_cpu_ms_per_request"] == 5.0
    assert row["pg_cpu_ms_per_request"] == 2.5
