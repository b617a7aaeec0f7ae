"""`python -m bench.counter_index_ab`: the backend CPU of the group commit's two statements
with the counters' bucket and hour indexes as B-trees (before migration 0011) against
block ranges (0011), interleaved in one run.

Two fresh databases at head; in the first the two indexes are put back as B-trees. The same
--count decisions and attempts (bench/batch_cost.py) go to each in turn, --block events at
a time in batches of --batch, so a loaded machine's load falls on both alike. Prints, per
round, the PostgreSQL backend's CPU per event of each stage on each database, summed over
the rounds so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.engine import compile_policy
from app.rules.starter import starter_policy
from app.store.base import create_engine
from app.store.migrate import upgrade
from app.store.pg_batch_count import CountItem, count_batch
from app.store.pg_batch_store import store_batch
from app.store.pg_fastpath import policy_version
from bench import procs
from bench.batch_cost import CLOCK, count_items, store_items
from bench.run import postgres_database

SIDES = ("btree", "brin")
BTREE = (
    "DROP INDEX ix_counters_bucket",
    "DROP INDEX ix_counter_hours_hour",
    "CREATE INDEX ix_counters_bucket ON counters (bucket)",
    "CREATE INDEX ix_counter_hours_hour ON counter_hours (hour)",
)


async def _counted(conn: AsyncConnection, batch: Sequence[CountItem]) -> None:
    await count_batch(conn, CLOCK, batch)


async def _block(
    conn: AsyncConnection, pid: int, items: Sequence[Any], size: int, write: Callable[..., Any]
) -> float:
    backend0 = procs.cpu_seconds(pid)
    for i in range(0, len(items), size):
        await write(conn, items[i : i + size])
    return procs.cpu_seconds(pid) - backend0


async def _measure(urls: Sequence[str], args: argparse.Namespace) -> None:
    compiled = compile_policy(starter_policy(), version=1)
    engines = [create_engine(url, autocommit=True) for url in urls]
    conns = [await engine.connect() for engine in engines]
    try:
        pids = []
        for conn in conns:
            raw = await conn.get_raw_connection()
            pids.append(raw.driver_connection.get_server_pid())  # type: ignore[union-attr]
        version = await policy_version(conns[0])
        rng = random.Random(17)  # noqa: S311 - load shape, not secrets
        cpu = {(side, stage): 0.0 for side in SIDES for stage in ("store", "count")}
        for round_ in range(args.rounds + 1):  # the first warms up
            stages: dict[str, tuple[Sequence[Any], Callable[..., Any]]] = {
                "store": (store_items(rng, compiled, args.count), store_batch),
                "count": (count_items(rng, compiled, args.count, version), _counted),
            }
            for lo in range(0, args.count, args.block):
                for side, conn, pid in zip(SIDES, conns, pids, strict=True):
                    for stage, (items, write) in stages.items():
                        block = items[lo : lo + args.block]
                        spent = await _block(conn, pid, block, args.batch, write)
                        cpu[side, stage] += spent if round_ else 0.0
            if round_:
                per = 1000 / (args.count * round_)
                row = {f"{s}_{t}_backend_ms": round(v * per, 4) for (s, t), v in cpu.items()}
                print(json.dumps({"round": round_, **row}), flush=True)
    finally:
        for conn in conns:
            await conn.close()
        for engine in engines:
            await engine.dispose()


async def _btree(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in BTREE:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        dsns = [
            stack.enter_context(postgres_database(args.postgres, args.db_prefix)) for _ in SIDES
        ]
        urls = [dsn.replace("postgresql://", "postgresql+asyncpg://", 1) for dsn in dsns]
        for url in urls:
            upgrade(url)
        asyncio.run(_btree(urls[0]))
        asyncio.run(_measure(urls, args))


if __name__ == "__main__":
    main()
