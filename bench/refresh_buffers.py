"""`python -m bench.refresh_buffers`: what one incremental baseline refresh reads once the
tables have outgrown shared_buffers: its statements, shared buffers hit and read
(pg_stat_statements: what does not depend on the machine's load) and its snapshot's wall time.

On a private cluster (bench/pg_cluster.py; shared_buffers 128 MB, autovacuum off, as the
machine's server) seeds --rows request events at --rate per second as the soak sends them:
random-looking verification ids (uuids: their primary key's pages are all over the index),
each request's inbox claim, its SMS receipt 1 s and its result 2 s later (70 % SUCCESSFUL),
interleaved in the inbox in time order, each stored as the app stores it (an insert, then an
update per receipt and result: new row versions), raw bodies of --body-bytes. Then a first
(full) refresh, and per round 30 s more traffic and one refresh as the app's job runs it (a
REPEATABLE READ snapshot read, then applied). Run it from another worktree's directory with
that worktree's interpreter to measure its code: `cd ../base && .venv/bin/python
../wt/bench/refresh_buffers.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path.cwd()))  # the worktree run from, not this file's

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.aggregates import BaselineSpec, HistorySpec
from app.rules.engine import CompiledPolicy
from app.services.baselines import BaselineCache
from app.store.base import create_engine
from app.store.migrate import upgrade
from bench.pg_cluster import private_cluster
from bench.run import postgres_database

RANGE_14D = BaselineSpec("range", -3, 14 * 86_400, None)
COUNTRY_1D = HistorySpec("country", None, 86_400)
SETTINGS = {
    "shared_buffers": "128MB",
    "autovacuum": "off",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "5min",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "fsync": "off",
}

_EVENTS = """
WITH r AS (
  SELECT g, CAST(:start AS timestamptz)
           + make_interval(secs => (g - CAST(:first AS bigint)) / CAST(:rate AS float8)) AS at,
         md5(g::text)::uuid::text AS id, (g % 10) < 7 AS ok
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
), e AS (
  SELECT at AS t, 0 AS k, id FROM r
  UNION ALL SELECT at + interval '1 s', 1, id FROM r
  UNION ALL SELECT at + interval '2 s', 2, id FROM r
)
INSERT INTO callbacks (received_at, event, verification_id, dedupe_key, signature,
                       http_status, raw_body)
SELECT t, (ARRAY['VerificationRequestEvent', 'VerificationDeliveredEvent',
                 'VerificationResultEvent'])[k + 1],
       id, k || id, 'valid', 200, convert_to(repeat(md5(id || k), :body / 32), 'UTF8')
FROM e ORDER BY t, k
"""
_REQUESTS = """
INSERT INTO verifications (id, created_at, requested_at, number, country, action,
                           request_callback_id, shadow_deny, degraded, price_amount,
                           price_currency, custom)
SELECT c.verification_id, c.received_at, c.received_at,
       '+4670' || lpad((abs(('x' || substr(c.verification_id, 1, 8))::bit(32)::int)
                        % 10000000)::text, 7, '0'),
       'SE', 'allow', c.id, false, false, 0.05, 'EUR', repeat('x', 300)
FROM callbacks c WHERE c.id > :lo AND c.event = 'VerificationRequestEvent' ORDER BY c.id
"""
_RECEIPTS = """
UPDATE verifications v SET sms_result = 'DELIVERED', sms_delivered_at = c.received_at
FROM callbacks c WHERE c.id > :lo AND c.event = 'VerificationDeliveredEvent'
  AND v.id = c.verification_id
"""
_RESULTS = """
UPDATE verifications v
SET status = CASE WHEN ('x' || substr(v.id, 10, 2))::bit(8)::int % 10 < 7
                  THEN 'SUCCESSFUL' ELSE 'FAIL' END,
    result_at = c.received_at
FROM callbacks c WHERE c.id > :lo AND c.event = 'VerificationResultEvent'
  AND v.id = c.verification_id
"""


@dataclass(frozen=True)
class Policy:
    baselines: dict[BaselineSpec, float]
    histories: frozenset[HistorySpec]


POLICY = cast(CompiledPolicy, Policy({RANGE_14D: 3}, frozenset({COUNTRY_1D})))


async def _traffic(
    engine: AsyncEngine, start: datetime, first: int, last: int, rate: float, body: int
) -> None:
    """Request events first..last from `start`, their receipts and results, as stored."""
    async with engine.begin() as conn:
        lo = (await conn.execute(text("SELECT coalesce(max(id), 0) FROM callbacks"))).scalar()
        params = {"start": start, "first": first, "last": last, "rate": rate, "body": body}
        await conn.execute(text(_EVENTS), params)
        for sql in (_REQUESTS, _RECEIPTS, _RESULTS):
            await conn.execute(text(sql), {"lo": lo})


async def _refresh(engine: AsyncEngine, cache: BaselineCache, now: datetime) -> dict[str, Any]:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_stat_statements_reset()"))
        await conn.commit()
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        started = time.perf_counter()
        read = await cache.read(conn, POLICY, now)
        await conn.commit()
        held = time.perf_counter() - started
    await cache.apply(POLICY, read, now)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT calls, shared_blks_hit, shared_blks_read, total_exec_time, query "
                    "FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' "
                    "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " ORDER BY shared_blks_hit + shared_blks_read DESC"
                )
            )
        ).all()
    return {
        "ms": 1000 * held,
        "statements": sum(r[0] for r in rows),
        "hit": sum(r[1] for r in rows),
        "read": sum(r[2] for r in rows),
        "changes": len(read.found),
        "top": [(r[0], r[1], r[2], round(r[3], 1), " ".join(r[4].split())[:90]) for r in rows[:4]],
    }


async def run(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    engine = create_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=args.rows / args.rate)
    step = int(30 * args.rate)
    for first in range(1, args.rows + 1, step):
        at = start + timedelta(seconds=(first - 1) / args.rate)
        await _traffic(engine, at, first, min(args.rows, first + step - 1), args.rate, args.body)
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text("CHECKPOINT"))
        size = (await conn.execute(text("SELECT pg_database_size(current_database())"))).scalar()
    cache, out = BaselineCache(), list[dict[str, Any]]()
    out.append(
        {"refresh": "first (full)", "db_mb": int(size or 0) >> 20}
        | await _refresh(engine, cache, now)
    )
    top = args.rows
    for _ in range(args.rounds):
        await _traffic(engine, now, top + 1, top + step, args.rate, args.body)
        top, now = top + step, now + timedelta(seconds=30)
        out.append({"refresh": "incremental"} | await _refresh(engine, cache, now))
    await engine.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--body", type=int, default=640, help="raw body bytes per callback")
    args = parser.parse_args(argv)
    with (
        private_cluster(SETTINGS) as admin,
        postgres_database(admin, prefix="vg_refresh_") as dsn,
    ):
        asyncio.run(_statements_extension(dsn))
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        for row in asyncio.run(run(url, args)):
            top = row.pop("top")
            print({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()})
            for line in top:
                print("    ", line)


async def _statements_extension(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION pg_stat_statements")
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
