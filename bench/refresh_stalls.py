"""`python -m bench.refresh_stalls`: the baseline refresh's synchronous slices on the event
loop, and the garbage collections it sets off, old against new in one process (A B B A).

Seeds --rows request events at --rate per second (bench/baseline_refresh.py: each with its
inbox claim, 70 % with a SUCCESSFUL result and its claim), with the collector as the server
sets it (app/gc_settings.py `server_gc`). Then per round: 30 s more traffic (its inbox ids
with a gap, as concurrent claims leave on PostgreSQL), and one refresh as the app's job runs
it (`refresh_live`: a REPEATABLE READ snapshot, then the changes applied), either as before
(`old`: collections on) or as now (`new`). Each
loop step is timed in thread CPU (asyncio's loop; uvloop's steps cannot be timed): the
refresh's longest step, its steps over 2 ms, and the collections during it (count, CPU).
Thread CPU, not wall time: what the loop spends does not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import gc_settings
from app.rules.model import Policy
from app.services import baselines
from app.services.policy.admin import replace_policy
from app.services.policy.cache import PolicyCache
from app.store.base import create_engine
from app.store.migrate import upgrade
from bench.baseline_refresh import _seed
from bench.run import postgres_database

# The starter policy's adaptive limit (a 14-day range baseline) and min_history's history.
RULES = [
    {
        "name": "range-velocity",
        "action": "deny",
        "reason": "range_velocity",
        "when": {
            "velocity": {
                "key": "range",
                "drop_last": 3,
                "window": "1h",
                "measure": "unverified",
                "limit": {"floor": 2, "factor": 0.5, "verified_in": "14d"},
            }
        },
    },
    {
        "name": "new-country",
        "action": "deny",
        "reason": "new_country",
        "when": {"verified": {"key": "country", "window": "1d", "at_most": 2, "min_history": "1m"}},
    },
]
GAP = "SELECT setval(pg_get_serial_sequence('callbacks', 'id'), nextval(pg_get_serial_sequence('callbacks', 'id')) + 3)"  # noqa: E501


class Steps:
    """Every loop step's thread CPU while `on`; collections' count and CPU."""

    def __init__(self) -> None:
        self.on = False
        self.steps: list[float] = []
        self.gcs: list[tuple[int, float]] = []
        self._gc_started = 0.0

    def run(self, handle: Any, original: Any) -> None:
        cpu = time.thread_time()
        try:
            original(handle)
        finally:
            if self.on:
                self.steps.append(1000 * (time.thread_time() - cpu))

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
        elif self.on:
            self.gcs.append((info["generation"], 1000 * (time.thread_time() - self._gc_started)))


@contextlib.contextmanager
def old_ways() -> Iterator[None]:
    """The refresh with collections on (its separate read of the ids present past the mark,
    once in one result, is gone: store/changes.py reads the span once, SPAN_CHUNK at a time)."""
    paused = baselines.young_collections_paused
    baselines.young_collections_paused = contextlib.nullcontext  # type: ignore[assignment]
    try:
        yield
    finally:
        baselines.young_collections_paused = paused


async def run(engine: AsyncEngine, rows: int, rate: float, rounds: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=rows / rate)
    for first in range(1, rows + 1, 50_000):
        await _seed(engine, start, first, min(rows, first + 49_999), rate)
    async with engine.begin() as conn:
        policy = Policy.model_validate({"rules": RULES})
        await replace_policy(conn, policy=policy, now=now - timedelta(days=30), actor="bench")
    async with engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text("ANALYZE"))
    policies, cache = PolicyCache(default_action="allow", timezone="UTC"), baselines.BaselineCache()
    await baselines.refresh_live(engine, policies, cache, now)
    watch = Steps()
    original = asyncio.events.Handle._run
    asyncio.events.Handle._run = lambda handle: watch.run(handle, original)  # type: ignore[method-assign]
    gc.callbacks.append(watch.on_gc)
    out, top = [], rows
    try:
        for index in range(rounds):
            name = "old" if index % 4 in (0, 3) else "new"  # A B B A
            step = int(30 * rate)
            async with engine.begin() as conn:
                await conn.execute(text(GAP))
            await _seed(engine, now, top + 1, top + step, rate)
            top, now = top + step, now + timedelta(seconds=30)
            gc.collect()  # each round from the same collector state
            watch.steps, watch.gcs, watch.on = [], [], True
            cpu = time.thread_time()
            with old_ways() if name == "old" else contextlib.nullcontext():
                await baselines.refresh_live(engine, policies, cache, now)
            watch.on = False
            spent = 1000 * (time.thread_time() - cpu)
            out.append(
                {"refresh": name, "cpu_ms": spent, "longest_ms": max(watch.steps),
                 "over_2ms": sum(s >= 2 for s in watch.steps),
                 "over_2ms_cpu": sum(s for s in watch.steps if s >= 2),
                 "gcs": len(watch.gcs), "gc_ms": sum(c for _, c in watch.gcs),
                 "gc_longest_ms": max((c for _, c in watch.gcs), default=0.0)}
            )  # fmt: skip
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]
        gc.callbacks.remove(watch.on_gc)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    with postgres_database(args.postgres, prefix=args.db_prefix) as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)

        async def go() -> list[dict[str, Any]]:
            engine = create_engine(url)
            try:
                with gc_settings.server_gc():
                    return await run(engine, args.rows, args.rate, args.rounds)
            finally:
                await engine.dispose()

        for row in asyncio.run(go(), debug=False):
            print(
                f"{row['refresh']}: CPU {row['cpu_ms']:.1f} ms, longest step"
                f" {row['longest_ms']:.1f} ms, steps >= 2 ms {row['over_2ms']}"
                f" ({row['over_2ms_cpu']:.1f} ms), collections {row['gcs']}"
                f" ({row['gc_ms']:.1f} ms, longest {row['gc_longest_ms']:.1f})"
            )


if __name__ == "__main__":
    main()
