"""`python -m bench.counter_history`: what counting one attempt costs once the counters
hold a day of minute buckets, on PostgreSQL and on SQLite.

`make bench` and `make soak` start on empty tables, where a window read sums a handful of
rows. The starter policy reads 24 h windows on hot keys (country, number range): after a
day each such window covers 1,440 minute rows per key. Per --hours value (default 0 and
24), on a fresh database: the counters are filled with that many hours of history before
now (every country key of the measured attempts a row per minute, every range key a row
per quarter hour, --numbers other per-number rows at random minutes), then --count
starter-policy attempts are counted, one statement each (`pg_batch_count.count_batch`
with batches of --batch on PostgreSQL; `SqlCounters.observe` in group-commit batches of 50
on SQLite), for --rounds rounds after a warm-up one.

Figures are load-independent: PostgreSQL backend CPU (from /proc) and client CPU per 1,000
attempts, and for one attempt on a hot key EXPLAIN (ANALYZE, BUFFERS) of its statement:
counter rows read (scan nodes' rows x loops) and shared buffers touched; on SQLite CPU
per attempt and SQLite VM instructions per attempt (a progress handler).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from app.rules.engine import compile_policy
from app.rules.starter import starter_policy
from app.store import pg_batch_count
from app.store.base import create_engine
from app.store.counter_model import VALUE_COLUMNS
from app.store.migrate import upgrade
from app.store.pg_batch_count import CountItem, count_batch
from app.store.pg_fastpath import policy_version
from bench import procs
from bench.batch_cost import CLOCK, count_items
from bench.run import postgres_database

COUNTED_TABLES = ("counters", "counter_hours")
_DUMP = bool(os.environ.get("COUNTER_HISTORY_PLAN"))  # the EXPLAIN output, on stderr


def history(items: list[CountItem], hours: int, numbers: int, now: datetime) -> Iterator[tuple]:
    """(key, bucket, *values) rows: `hours` hours of minute buckets before now's bucket."""
    rng = random.Random(5)  # noqa: S311 - load shape, not secrets
    current = CLOCK.bucket(now)
    keys = sorted({k for item in items for change in item.changes for k in change.keys})
    countries = [k for k in keys if k.startswith("country:")]
    ranges = [k for k in keys if k.startswith("range-")]
    minutes = hours * 60
    for m in range(1, minutes + 1):
        bucket = current - 60 * m
        for key in countries:
            yield (key, bucket, 3, 2, 0, 9000, 6000, 0, 1)
        for i, key in enumerate(ranges):
            if (m + i) % 15 == 0:
                yield (key, bucket, 1, 1, 0, 3000, 3000, 0, 1)
    seen: set[tuple[str, int]] = set()  # a number drawn twice in one minute: one row
    for _ in range(numbers if minutes else 0):
        number = f"number:+4670{rng.randrange(10**7):07d}"
        bucket = current - 60 * rng.randrange(1, minutes + 1)
        if (number, bucket) not in seen:
            seen.add((number, bucket))
            yield (number, bucket, 1, 1, 0, 3000, 3000, 0, 0)


async def fill(apg: Any, items: list[CountItem], hours: int, numbers: int) -> int:
    """Fill a PostgreSQL database's counters (asyncpg connection `apg`) with `hours` hours of
    history (`history`) for the keys of `items`, analyse them, return the counter rows stored.
    Shared by this benchmark and `bench.soak --history-hours`."""
    rows = history(items, hours, numbers, items[0].reads.now)
    await apg.copy_records_to_table(
        "counters", records=rows, columns=["key", "bucket", *VALUE_COLUMNS]
    )
    # A settled history is analysed (the hour table too, where there is one). An
    # empty table is not: analysed empty, generic plans scan it whole as it fills.
    tables = list(COUNTED_TABLES) if hours else []
    for table in await apg.fetch(
        "SELECT tablename FROM pg_tables WHERE tablename = any($1::text[])",
        tables,
    ):
        await apg.execute(f'VACUUM ANALYZE "{table[0]}"')
    stored: int = await apg.fetchval("SELECT count(*) FROM counters")
    return stored


def _scan_rows(plan: dict[str, Any], found: dict[str, int]) -> None:
    """Rows the plan's scans of the counter tables returned, summed over their loops."""
    relation = plan.get("Relation Name")
    if relation in COUNTED_TABLES and "Scan" in plan["Node Type"]:
        found[relation] = found.get(relation, 0) + plan["Actual Rows"] * plan["Actual Loops"]
    for child in plan.get("Plans", []):
        _scan_rows(child, found)


class _Recording:
    """The asyncpg connection, remembering the last statement fetched (for EXPLAIN)."""

    def __init__(self, apg: Any) -> None:
        self.apg = apg
        self.last: tuple[str, tuple[Any, ...]] | None = None

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.last = (sql, args)
        return await self.apg.fetch(sql, *args)


async def _postgres(url: str, args: argparse.Namespace, hours: int) -> dict[str, Any]:
    compiled = compile_policy(starter_policy(), version=1)
    engine = create_engine(url, autocommit=True)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            apg: Any = raw.driver_connection
            pid = apg.get_server_pid()
            version = await policy_version(conn)
            await apg.execute("SET plan_cache_mode = force_generic_plan")  # as the app's
            if args.plan_cache_mode:
                await apg.execute(f"SET plan_cache_mode = {args.plan_cache_mode}")
            items = count_items(random.Random(17), compiled, args.count, version)  # noqa: S311
            stored = await fill(apg, items, hours, args.numbers)
            size = args.batch
            batches = [items[i : i + size] for i in range(0, len(items), size)]
            client = backend = 0.0
            for round_ in range(args.rounds + 1):  # the first warms up
                cpu0, backend0 = time.process_time(), procs.cpu_seconds(pid)
                for batch in batches:
                    await count_batch(conn, CLOCK, batch)
                if round_:
                    client += time.process_time() - cpu0
                    backend += procs.cpu_seconds(pid) - backend0
            explained = await _explain(conn, apg, items)
    finally:
        await engine.dispose()
    per = 1000 / (args.count * args.rounds)
    return {
        "backend": "postgresql",
        "hours": hours,
        "counter_rows": stored,
        "backend_cpu_s_per_1000": round(backend * per, 4),
        "client_cpu_s_per_1000": round(client * per, 4),
        **explained,
    }


async def _explain(conn: Any, apg: Any, items: list[CountItem]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of one attempt's count (the first on a country key)."""
    recording = _Recording(apg)
    original = pg_batch_count.driver

    async def recorded(_: Any) -> Any:
        return recording

    pg_batch_count.driver = recorded  # type: ignore[assignment]
    try:
        await count_batch(conn, CLOCK, items[:1])
    finally:
        pg_batch_count.driver = original
    assert recording.last is not None
    sql, values = recording.last
    found = await apg.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *values)
    plan = (json.loads(found) if isinstance(found, str) else found)[0]
    if _DUMP:
        print(json.dumps(plan, indent=1), file=sys.stderr)
    rows: dict[str, int] = {}
    _scan_rows(plan["Plan"], rows)
    top = plan["Plan"]
    return {
        "explain_rows_read": rows,
        "explain_shared_buffers": top.get("Shared Hit Blocks", 0)
        + top.get("Shared Read Blocks", 0),
        "explain_exec_ms": round(plan["Execution Time"], 3),
    }


def _sqlite(args: argparse.Namespace, hours: int) -> dict[str, Any]:
    from sqlalchemy import create_engine as create_sync_engine

    from app.store import counters
    from app.store.thread_connection import ThreadConnection, drive

    store = counters.SqlCounters(60)
    compiled = compile_policy(starter_policy(), version=1)
    items = count_items(random.Random(17), compiled, args.count, 1)  # noqa: S311
    with tempfile.TemporaryDirectory(prefix="vg-o-history-") as tmp:
        path = Path(tmp) / "history.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        marks = ", ".join("?" * (2 + len(VALUE_COLUMNS)))
        with sqlite3.connect(path) as filling:
            filling.executemany(
                f"INSERT INTO counters (key, bucket, {', '.join(VALUE_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                history(items, hours, args.numbers, items[0].reads.now),
            )
            filling.execute("ANALYZE")
            stored = filling.execute("SELECT count(*) FROM counters").fetchone()[0]
        engine = create_sync_engine(f"sqlite:///{path}")
        steps = [0]

        def step() -> int:
            steps[0] += 1
            return 0

        cpu = 0.0
        with engine.connect() as sync:
            sync.exec_driver_sql("PRAGMA journal_mode=WAL")
            sync.exec_driver_sql("PRAGMA synchronous=NORMAL")
            dbapi: Any = sync.connection.dbapi_connection
            for round_ in range(args.rounds + 1):
                steps[0] = 0
                dbapi.set_progress_handler(step, 100)
                started = time.process_time()
                for i in range(0, len(items), 50):
                    sync.exec_driver_sql("BEGIN IMMEDIATE")
                    conn: Any = ThreadConnection(sync)
                    for item in items[i : i + 50]:
                        drive(store.observe(conn, item.changes, item.reads, version=None))
                    conn.flush()
                    sync.commit()
                if round_:
                    cpu += time.process_time() - started
                dbapi.set_progress_handler(None, 0)
            vm = steps[0] * 100 / len(items)
        engine.dispose()
    return {
        "backend": "sqlite",
        "hours": hours,
        "counter_rows": stored,
        "cpu_us_per_attempt": round(cpu / (args.count * args.rounds) * 1e6, 1),
        "vm_instructions_per_attempt": round(vm),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--hours", default="0,24", help="comma-separated history lengths")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--numbers", type=int, default=50_000)
    parser.add_argument(
        "--plan-cache-mode", choices=("auto", "force_generic_plan", "force_custom_plan")
    )
    parser.add_argument("--skip", choices=("postgresql", "sqlite"), default=None)
    args = parser.parse_args(argv)
    for hours in [int(h) for h in args.hours.split(",")]:
        if args.skip != "postgresql":
            with postgres_database(args.postgres, prefix=args.db_prefix) as dsn:
                url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
                upgrade(url)
                print(json.dumps(asyncio.run(_postgres(url, args, hours))), flush=True)
        if args.skip != "sqlite":
            print(json.dumps(_sqlite(args, hours)), flush=True)


if __name__ == "__main__":
    main()
