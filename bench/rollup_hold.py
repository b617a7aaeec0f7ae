"""`python -m bench.rollup_hold`: how long rolling one settled hour of a pumping attack holds
SQLite's writer, the one connection the request path writes through.

Seeds --rows verifications into one hour three hours ago (a range-pumping mix: most denied,
numbers spread over a few thousand ranges, some shadow matches), then per round rolls that
hour twice, from nothing each time: on the writer (`stats_rollup.refresh`, INSERT … SELECT
in the writer's transaction, as every roll was before) and apart (`refresh_apart`: the
aggregates read on the reader, stored through the writer). Beside each, a probe writes one
row through the writer every 10 ms, as a request event's store would, and its waits are
reported: what request events would wait meanwhile (the decision deadline is 250 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.audit.rollup import refresh_apart
from app.store import stats_rollup
from app.store.base import create_engine, create_reader
from app.store.migrate import upgrade
from app.store.stats_rollup import TABLES
from app.store.tables import rollup_hours

HOUR = timedelta(hours=1)


def seed(path: Path, rows: int, hour: datetime) -> None:
    rng = random.Random(7)  # noqa: S311 - a reproducible mix, not a secret
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE bench_probe (n INTEGER)")
        db.executemany(
            "INSERT INTO verifications (id, app_key, method, number, country, price_amount,"
            " price_currency, requested_at, action, reason, decided_by, rule_name,"
            " shadow_deny, degraded, status, created_at) VALUES"
            " (?, 'app', 'sms', ?, ?, ?, 'EUR', ?, ?, ?, 'enforce', ?, ?, 0, ?, ?)",
            (_row(n, rng, hour + HOUR * n / rows) for n in range(rows)),
        )
        db.execute(
            "INSERT INTO verification_matches (verification_id, rule_name, action, reason,"
            " matched_at) SELECT id, 'range_watch', 'deny', 'watch', requested_at"
            " FROM verifications WHERE abs(random()) % 20 = 0"
        )
    db.close()


def _row(n: int, rng: random.Random, at: datetime) -> tuple[Any, ...]:
    fraud = rng.random() < 0.9
    country = rng.choice(["GB", "NG", "ID"]) if fraud else "SE"
    number = f"+44{rng.randrange(3000):04d}{rng.randrange(10**6):06d}" if fraud else f"+4670{n:07d}"
    stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")
    action, reason, rule = (
        ("deny", "range_velocity", "ranges") if fraud else ("allow", "default", None)
    )
    status = None if fraud else rng.choice(["SUCCESSFUL", "SUCCESSFUL", "FAIL"])
    return (f"v{n}", number, country, 0.05, stamp, action, reason, rule, 0, status, stamp)


class Holds:
    """The writer's checkouts, timed: how long each held the one connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.held: list[float] = []
        self._out: dict[int, float] = {}
        pool = engine.sync_engine
        event.listen(pool, "checkout", self._checkout)
        event.listen(pool, "checkin", self._checkin)

    def _checkout(self, dbapi: Any, record: Any, proxy: Any) -> None:
        self._out[id(record)] = time.perf_counter()

    def _checkin(self, dbapi: Any, record: Any) -> None:
        start = self._out.pop(id(record), None)
        if start is not None:
            self.held.append(time.perf_counter() - start)


async def probe(engine: AsyncEngine, stop: asyncio.Event, waits: list[float]) -> None:
    """One small write through the writer every 10 ms; its latency recorded."""
    n = 0
    while not stop.is_set():
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO bench_probe (n) VALUES (:n)"), {"n": n})
        waits.append(time.perf_counter() - started)
        n += 1
        await asyncio.sleep(0.01)


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in (*TABLES, rollup_hours):
            await conn.execute(delete(table))
        await conn.execute(text("DELETE FROM bench_probe"))


async def one(
    writer: AsyncEngine, reader: AsyncEngine, hour: datetime, apart: bool
) -> dict[str, float]:
    await reset(writer)
    holds = Holds(writer)
    waits: list[float] = []
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(writer, stop, waits))
    await asyncio.sleep(0.2)
    holds.held.clear()
    started = time.perf_counter()
    if apart:
        rolled = await refresh_apart(writer, reader, hour, hour + HOUR)
    else:
        async with writer.begin() as conn:
            rolled = await stats_rollup.refresh(conn, hour, hour + HOUR)
    took = time.perf_counter() - started
    stop.set()
    await probing
    assert rolled == 1, rolled
    event.remove(writer.sync_engine, "checkout", holds._checkout)
    event.remove(writer.sync_engine, "checkin", holds._checkin)
    waits.sort()
    return {
        "took_s": took,
        "max_hold_ms": 1000 * max(holds.held),
        "probe_p50_ms": 1000 * statistics.median(waits),
        "probe_max_ms": 1000 * waits[-1],
        "probe_over_250ms": sum(w > 0.25 for w in waits),
    }


def main(rows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rollup.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        hour = stats_rollup.floor_hour(datetime.now(UTC)) - 3 * HOUR
        started = time.perf_counter()
        seed(path, rows, hour)
        print(f"seeded {rows:,} verifications in one hour in {time.perf_counter() - started:.1f} s")
        asyncio.run(measure(url, hour, rounds))


async def measure(url: str, hour: datetime, rounds: int) -> None:
    writer = create_engine(url)
    reader = create_reader(writer)
    try:
        for n in range(rounds):
            for apart in (False, True):
                figures = await one(writer, reader, hour, apart)
                name = "apart    " if apart else "on writer"
                print(
                    f"round {n + 1} {name}: rolled in {figures['took_s']:.2f} s;"
                    f" the writer held at most {figures['max_hold_ms']:.0f} ms;"
                    f" a probe write waited p50 {figures['probe_p50_ms']:.1f} ms,"
                    f" max {figures['probe_max_ms']:.0f} ms,"
                    f" {figures['probe_over_250ms']:.0f} over 250 ms"
                )
    finally:
        await reader.dispose()
        await writer.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    main(args.rows, args.rounds)
