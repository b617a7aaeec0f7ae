"""`python -m bench.baseline_refresh`: what one baseline refresh costs at a given history,
the full read every refresh did before against the incremental one, on PostgreSQL.

Seeds --rows request events at --rate per second (each with its inbox claim; 70 % get a
SUCCESSFUL result 2 s later, with its claim), then per round: the old refresh's two reads
(the starter policy's 14-day range baseline whole, and min_history's last 5.5 minutes of
attempts) and the new refresh after 30 s more traffic, each timed (wall clock, and this
process's CPU) and its rows read from `verifications` counted (the backend's own
statistics, `pg_stat_xact_user_tables`: what does not depend on the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.aggregates import BaselineSpec, HistorySpec
from app.rules.engine import CompiledPolicy
from app.services.baselines import BaselineCache
from app.store.base import create_engine
from app.store.baselines import BaselineQuery, attempt_spans, last, verified_counts
from app.store.migrate import upgrade
from bench.run import postgres_database

RANGE_14D = BaselineSpec("range", -3, 14 * 86_400, None)
COUNTRY_1D = HistorySpec("country", None, 86_400)


def seed_sql(id_expr: str = "'v' || g") -> str:
    """Request events :first..:last at :rate a second from :start, 70 % of them verified 2 s
    later, priced, inserted in time order as the app stores them; ids are `id_expr` of `g`
    (`'v' || g` here, so results can name them; bench/job_growth.py takes random-looking
    uuids, whose B-tree grows as real verification ids do)."""
    return _SEED.replace("{id_expr}", id_expr)


_SEED = """
WITH r AS (
  SELECT g, CAST(:start AS timestamptz)
           + make_interval(secs => (g - CAST(:first AS bigint)) / CAST(:rate AS float8)) AS at,
         '+4670' || lpad(((g * 7919) % 10000000)::text, 7, '0') AS number,
         {id_expr} AS id, (g % 10) < 7 AS ok
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
), q AS (
  INSERT INTO callbacks (received_at, event, verification_id, dedupe_key, signature,
                         http_status, raw_body)
  SELECT at, 'VerificationRequestEvent', id, 'q' || id, 'valid', 200, '\\x'::bytea FROM r
  RETURNING id AS callback_id, verification_id
)
INSERT INTO verifications (id, created_at, requested_at, number, country, action,
                           request_callback_id, status, result_at, shadow_deny, degraded,
                           price_amount, price_currency)
SELECT r.id, r.at, r.at, r.number, 'SE', 'allow', q.callback_id,
       CASE WHEN ok THEN 'SUCCESSFUL' END, CASE WHEN ok THEN r.at + interval '2 s' END,
       false, false, 0.05, 'EUR'
FROM r JOIN q ON q.verification_id = r.id ORDER BY r.g
"""


SEED = seed_sql()
RESULTS = """
INSERT INTO callbacks (received_at, event, verification_id, dedupe_key, signature,
                       http_status, raw_body)
SELECT result_at, 'VerificationResultEvent', id, 'r' || id, 'valid', 200, '\\x'::bytea
FROM verifications WHERE status = 'SUCCESSFUL' AND id = ANY(CAST(:ids AS text[]))
"""


@dataclass(frozen=True)
class Policy:
    baselines: dict[BaselineSpec, float]
    histories: frozenset[HistorySpec]


async def _seed(engine: AsyncEngine, start: datetime, first: int, last_: int, rate: float) -> None:
    params = {"start": start, "first": first, "last": last_, "rate": rate}
    async with engine.begin() as conn:
        await conn.execute(text(SEED), params)
        ids = [f"v{g}" for g in range(first, last_ + 1)]
        await conn.execute(text(RESULTS), {"ids": ids})


async def _fetched(conn: AsyncConnection) -> int:
    stmt = text(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
        "FROM pg_stat_xact_user_tables WHERE relname = 'verifications'"
    )
    return int((await conn.execute(stmt)).scalar_one())


async def _old(engine: AsyncEngine, now: datetime) -> tuple[float, float, int]:
    async with engine.connect() as conn:
        before, started, cpu = await _fetched(conn), time.perf_counter(), time.process_time()
        await verified_counts(conn, BaselineQuery("range", -3, last(timedelta(days=14), now), 3))
        since = now - timedelta(seconds=30) - timedelta(minutes=5)
        await attempt_spans(conn, "country", None, since, now)
        spent = time.perf_counter() - started, time.process_time() - cpu
        return *spent, await _fetched(conn) - before


async def _new(
    engine: AsyncEngine, cache: BaselineCache, now: datetime
) -> tuple[float, float, int]:
    policy = cast(CompiledPolicy, Policy({RANGE_14D: 3}, frozenset({COUNTRY_1D})))
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        before, started, cpu = await _fetched(conn), time.perf_counter(), time.process_time()
        await cache.refresh(conn, policy, now)
        spent = time.perf_counter() - started, time.process_time() - cpu
        return *spent, await _fetched(conn) - before


async def run(url: str, rows: int, rate: float, rounds: int) -> list[dict[str, Any]]:
    engine = create_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=rows / rate)
    for first in range(1, rows + 1, 50_000):
        await _seed(engine, start, first, min(rows, first + 49_999), rate)
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text("ANALYZE"))
    cache, out = BaselineCache(), list[dict[str, Any]]()
    full = await _new(engine, cache, now)
    initial = {"seconds": full[0], "cpu": full[1], "rows": full[2]}
    out.append({"refresh": "new, first (full read)"} | initial)
    top = rows
    for _ in range(rounds):
        step = int(30 * rate)  # 30 s more traffic, then both refreshes
        await _seed(engine, now, top + 1, top + step, rate)
        top, now = top + step, now + timedelta(seconds=30)
        old = await _old(engine, now)
        new = await _new(engine, cache, now)
        for name, (seconds, cpu, read) in (("old", old), ("new", new)):
            out.append(
                {"refresh": name, "seconds": seconds, "cpu": cpu, "rows": read} | {"history": top}
            )
    await engine.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with postgres_database(args.postgres, prefix=args.db_prefix) as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        for row in asyncio.run(run(url, args.rows, args.rate, args.rounds)):
            seconds = f"{1000 * row['seconds']:.1f} ms (app CPU {1000 * row['cpu']:.1f} ms)"
            print(
                f"{row['refresh']:<24} {seconds:>32}  rows read {row['rows']:>8}  "
                f"history {row.get('history', args.rows)}"
            )


if __name__ == "__main__":
    main()
