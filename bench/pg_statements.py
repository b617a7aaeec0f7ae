"""`python -m bench.pg_statements`: where PostgreSQL's time goes in the group commit's two
statements, statement by statement (the hour triggers' nested statements included).

A private cluster (bench/pg_cluster.py) with pg_stat_statements preloaded (`track = all`,
so the statements the counters' triggers run are counted on their own) and a fresh
database; bench.batch_cost's starter-policy request events, stored then counted in batches
of --batch, a warm-up round first, then the statistics reset and --rounds rounds measured.
Prints per request event, for each statement: calls, execution ms, shared buffers hit and
dirtied, WAL records and bytes; and the backend's CPU per event (/proc) for both stages.
Load-independent but for the times: buffers, WAL and calls count work, not the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from contextlib import ExitStack
from typing import Any

import asyncpg

from app.rules.engine import compile_policy
from app.rules.starter import starter_policy
from app.store.base import create_engine
from app.store.migrate import upgrade
from app.store.pg_batch_store import store_batch
from bench import pg_cluster
from bench.batch_cost import (
    PRIVATE,
    _timed,
    count_items,
    counted,
    measured_connection,
    store_items,
)
from bench.run import postgres_database

SETTINGS = {
    **PRIVATE,
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "1000",
}
_READ = """
SELECT toplevel, calls, total_exec_time, rows, shared_blks_hit, shared_blks_read,
       shared_blks_dirtied, wal_records, wal_fpi, wal_bytes, left(regexp_replace(query,
       '\\s+', ' ', 'g'), 150) AS query
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname =
current_database()) ORDER BY total_exec_time DESC
"""


async def _measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(17)  # noqa: S311 - load shape, not secrets
    compiled = compile_policy(starter_policy(), version=1)
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = await asyncpg.connect(dsn)
    await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    engine = create_engine(url, autocommit=True)
    stages = {"store": 0.0, "count": 0.0}
    try:
        async with measured_connection(engine) as (conn, pid, version):
            size = args.batch
            for round_ in range(args.rounds + 1):
                stores = store_items(rng, compiled, args.count)
                counts = count_items(rng, compiled, args.count, version)
                if round_ == 1:
                    await admin.execute("SELECT pg_stat_statements_reset()")
                batches = [stores[i : i + size] for i in range(0, len(stores), size)]
                store = await _timed(conn, pid, batches, store_batch)
                batches = [counts[i : i + size] for i in range(0, len(counts), size)]
                count = await _timed(conn, pid, batches, counted)
                if round_:
                    stages["store"] += store[1]
                    stages["count"] += count[1]
        events = args.count * args.rounds
        rows = await admin.fetch(_READ)
    finally:
        await engine.dispose()
        await admin.close()
    per = 1 / events
    statements = [
        {
            "top": r["toplevel"],
            "calls": round(r["calls"] * per, 3),
            "ms": round(r["total_exec_time"] * per, 4),
            "hit": round(r["shared_blks_hit"] * per, 2),
            "dirtied": round(r["shared_blks_dirtied"] * per, 3),
            "wal_records": round(r["wal_records"] * per, 2),
            "wal_bytes": round(float(r["wal_bytes"]) * per),
            "query": r["query"],
        }
        for r in rows
        if r["calls"] * per >= 0.001
    ]
    return {
        "batch": args.batch,
        "events": events,
        "backend_cpu_ms_per_event": {k: round(v * 1000 * per, 4) for k, v in stages.items()},
        "statements": statements,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--count", type=int, default=3200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        admin = stack.enter_context(pg_cluster.private_cluster(SETTINGS))
        dsn = stack.enter_context(postgres_database(admin, prefix=args.db_prefix))
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        print(json.dumps(asyncio.run(_measure(dsn, args)), indent=1))


if __name__ == "__main__":
    main()
