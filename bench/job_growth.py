"""`python -m bench.job_growth`: what one run of each of the app's periodic jobs costs the
database as the soak's data grows, on a private PostgreSQL cluster (production settings,
pg_stat_statements loaded), so without the machine's load in the figures.

Seeds --minutes (10) of soak-like traffic at --rate (300) request events/s (each with its
inbox claim, a delivery receipt 1 s later and, for 70 %, a SUCCESSFUL result 2 s later, each
with its claim: bench/soak.py's shape), runs every job once (the baseline cache brought to
the size's `now` first, then 30 s more traffic, then the measured incremental refresh), then
doubles the history and does it again (--steps times). Per job and size: the buffers its
statements touched (shared_blks_hit + shared_blks_read: what does not depend on the load),
the rows they returned, their calls and execution time, and this process's CPU for it.
A job whose buffers grow with the size is a grower; one bounded by what changed since its
last run stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.metrics import Metrics
from app.services import baselines as baseline_refresh
from app.services.alerts.jobs import AlertJobs
from app.services.audit import retention
from app.services.audit.rollup import roll_settled
from app.services.policy.cache import PolicyCache
from app.services.policy.starter import install_starter_policy
from app.settings import Settings
from app.store.base import create_engine
from app.store.migrate import upgrade
from bench import pg_cluster, postgres_settings
from bench.baseline_refresh import seed_sql
from bench.run import postgres_database

SEED = seed_sql("md5(g::text)::uuid::text")
FOLLOW_UPS = """
INSERT INTO callbacks (received_at, event, verification_id, dedupe_key, signature,
                       http_status, raw_body)
SELECT at, event, id, key, 'valid', 200, '\\x'::bytea FROM (
  SELECT requested_at + interval '1 s' AS at, 'VerificationSmsDeliveredEvent' AS event, id,
         'd' || id AS key
  FROM verifications WHERE requested_at >= :since AND requested_at < :until
  UNION ALL
  SELECT result_at, 'VerificationResultEvent', id, 'r' || id FROM verifications
  WHERE requested_at >= :since AND requested_at < :until AND status = 'SUCCESSFUL'
) f ORDER BY at
"""
STATEMENTS = """
SELECT coalesce(sum(shared_blks_hit + shared_blks_read), 0) AS buffers,
       coalesce(sum(rows), 0) AS rows, coalesce(sum(calls), 0) AS calls,
       coalesce(sum(total_exec_time), 0) AS exec_ms
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = :db)
  AND query NOT LIKE '%pg_stat_statements%'
"""
# The biggest statements of a job, by buffers: what grows.
TOP = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query, calls, rows,
       shared_blks_hit + shared_blks_read AS buffers
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = :db)
  AND query NOT LIKE '%pg_stat_statements%' ORDER BY buffers DESC LIMIT 3
"""


class World:
    def __init__(self, engine: AsyncEngine, admin: AsyncEngine, db: str, rate: float) -> None:
        self.engine, self.admin, self.db, self.rate = engine, admin, db, rate
        self.top = 0  # request events seeded so far
        self.settings = Settings(_env_file=None, environment="test")  # type: ignore[call-arg]
        self.policies = PolicyCache(default_action="allow", timezone="UTC")
        self.cache = baseline_refresh.BaselineCache()
        self.alerts = AlertJobs(
            engine=engine, settings=self.settings, policies=self.policies, metrics=Metrics()
        )

    async def seed(self, start: datetime, seconds: float) -> None:
        """`seconds` of traffic from `start` (requests, then their receipts and results)."""
        total = int(seconds * self.rate)
        for first in range(self.top + 1, self.top + total + 1, 30_000):
            last = min(self.top + total, first + 29_999)
            at = start + timedelta(seconds=(first - self.top - 1) / self.rate)
            params = {"start": at, "first": first, "last": last, "rate": self.rate}
            async with self.engine.begin() as conn:
                await conn.execute(text(SEED), params)
        async with self.engine.begin() as conn:
            until = start + timedelta(seconds=seconds)
            await conn.execute(text(FOLLOW_UPS), {"since": start, "until": until})
        self.top += total

    async def measure(self, job: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        async with self.admin.connect() as conn:
            await conn.execute(text("SELECT pg_stat_statements_reset()"))
            await conn.commit()
        cpu, wall = time.process_time(), time.perf_counter()
        await job()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        async with self.admin.connect() as conn:
            row = (await conn.execute(text(STATEMENTS), {"db": self.db})).one()
            top = (await conn.execute(text(TOP), {"db": self.db})).all()
        return {
            "buffers": int(row.buffers),
            "rows": int(row.rows),
            "calls": int(row.calls),
            "exec_ms": round(float(row.exec_ms), 1),
            "cpu_ms": round(1000 * cpu, 1),
            "top": [f"{t.buffers:>8} {t.calls:>4}x {t.query}" for t in top],
        }


async def _jobs(world: World, now: datetime) -> dict[str, Callable[[], Awaitable[Any]]]:
    engine = world.engine

    async def baselines() -> None:
        await baseline_refresh.refresh_live(engine, world.policies, world.cache, now)

    async def stats_rollup() -> None:
        async with engine.begin() as conn:
            await roll_settled(conn, now=now)

    async def purge() -> None:
        await retention.purge(
            engine,
            older_than=timedelta(days=30),
            counter_retention=timedelta(days=8),
            now=now,
        )

    return {
        "baselines.refresh (30 s of new traffic)": baselines,
        "stats rollup (+ overview rollups)": stats_rollup,
        "retention.purge (30 d, nothing old)": purge,
        "alerts.evaluate": lambda: world.alerts.evaluate_once(now),
        "alerts.deliver": lambda: world.alerts.deliver_once(now),
        "alerts.containments": lambda: world.alerts.refresh_once(now),
    }


async def run(admin_dsn: str, dsn: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    admin_url = admin_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine, admin = create_engine(url), create_engine(admin_url)
    db = dsn.rsplit("/", 1)[1]
    async with admin.begin() as conn:
        await conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    world = World(engine, admin, db, args.rate)
    # The simulated clock moves with the seeded traffic, from far enough back that the last
    # size ends near the real now.
    total = args.minutes * 2**args.steps
    clock = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=total + 2)
    await install_starter_policy(engine, now=clock)
    out: list[dict[str, Any]] = []
    minutes, seeded = args.minutes, 0.0
    for _ in range(args.steps + 1):
        await world.seed(clock, 60 * minutes - seeded)
        clock += timedelta(seconds=60 * minutes - seeded)
        async with engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("VACUUM ANALYZE"))
        # The cache as the app keeps it: current at `clock`, then 30 s more traffic.
        await baseline_refresh.refresh_live(engine, world.policies, world.cache, clock)
        await world.seed(clock, 30)
        clock += timedelta(seconds=30)
        seeded = 60 * minutes + 30
        size = await _sizes(engine)
        for name, job in (await _jobs(world, clock)).items():
            found = await world.measure(job)
            out.append({"minutes": minutes, "job": name, **size, **found})
        minutes *= 2
    await engine.dispose()
    await admin.dispose()
    return out


async def _sizes(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM verifications) AS verifications, "
                    "(SELECT count(*) FROM callbacks) AS callbacks"
                )
            )
        ).one()
    return {"verifications": int(row.verifications), "callbacks": int(row.callbacks)}


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "minutes  verifications  job                                        buffers"
        "     rows  calls  exec ms  CPU ms"
    ]
    for r in sorted(rows, key=lambda r: (r["job"], r["minutes"])):
        lines.append(
            f"{r['minutes']:>7}  {r['verifications']:>13}  {r['job']:<41}  {r['buffers']:>8}"
            f"  {r['rows']:>7}  {r['calls']:>5}  {r['exec_ms']:>7}  {r['cpu_ms']:>6}"
        )
        lines += [f"{'':>24}{t}" for t in r["top"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=10, help="of traffic, the first size")
    parser.add_argument("--steps", type=int, default=2, help="doublings after the first size")
    parser.add_argument("--rate", type=float, default=300.0, help="request events per second")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = postgres_settings.SETTINGS | {"shared_preload_libraries": "pg_stat_statements"}
    with (
        pg_cluster.private_cluster(settings) as admin,
        postgres_database(admin, prefix=args.db_prefix) as dsn,
    ):
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        rows = asyncio.run(run(admin, dsn, args))
    print(json.dumps(rows) if args.json else render(rows))


if __name__ == "__main__":
    main()
