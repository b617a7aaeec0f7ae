"""Counter windows read the same on every backend, over days of attempts.

Redis keeps each minute's counts and, beside them, each hour's; a long window reads whole
hours from the hour totals. PostgreSQL and SQLite read their minutes, with different
statements. SQLite is the reference. Random attempts, settles, redeliveries and successes over 30 hours go to
the reference and to the backend under test; every window (10 min, 1 h, 24 h; attempts,
spend, allowed, allowed spend, successes) must read the same after each attempt, also
when the hour totals start mid-run (an upgrade: minutes counted before have none).
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.base import create_engine
from app.store.buckets import Measure, WindowQuery
from app.store.counters import SqlCounters
from app.store.redis_counters import RedisCounters

KEYS = ["number:+46701234567", "range8:+4670123", "country:SE", "global"]
MEASURES: tuple[Measure, ...] = ("attempts", "spend", "allowed", "allowed_spend", "successes")
WINDOWS = (600, 3600, 86_400)
QUERIES = [WindowQuery(k, w, m) for k in KEYS for w in WINDOWS for m in MEASURES]
START = datetime(2026, 11, 20, 6, 17, 42, tzinfo=UTC)
UPGRADES = [0, 7.5, 100]  # hours after START the hour totals start (0: fresh, 100: never)


@dataclass
class Side:
    backend: Any
    engine: AsyncEngine | None = None

    async def call(self, method: str, **kwargs: Any) -> Any:
        if self.engine is None:
            return await getattr(self.backend, method)(None, **kwargs)
        async with self.engine.begin() as conn:
            return await getattr(self.backend, method)(conn, **kwargs)


@pytest.fixture
async def reference(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Side]:
    path = tmp_path / "reference.db"
    shutil.copy(sqlite_template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    yield Side(SqlCounters(60), engine)
    await engine.dispose()


async def _drive(
    reference: Side,
    subject: Side,
    *,
    upgraded_after_hours: float,
    old_code: Callable[[bool], None],
    upgrade_at: Callable[[datetime], Awaitable[None]],
) -> None:
    rng = random.Random(upgraded_after_hours)
    hours_from = START + timedelta(hours=upgraded_after_hours)
    now, compared, long_reads, made = START, 0, 0, []
    sides = (reference, subject)
    old_code(bool(upgraded_after_hours))
    if not upgraded_after_hours:
        await upgrade_at(START)
    while now < START + timedelta(hours=30):
        step = timedelta(seconds=rng.choice([0, 5, 45, 70, 300, 1100, 2900]))
        if now < hours_from <= now + step:
            # The old code counts, then the new one, within the upgrade's hour: that hour's
            # totals miss the first counts, so it must still be read minute by minute.
            for side in sides:
                await side.call(
                    "observe", keys=KEYS, queries=[], now=hours_from - timedelta(seconds=30),
                    spend_micros=50_000,
                )  # fmt: skip
            old_code(False)
            await upgrade_at(hours_from)
            step = hours_from - now
        now += step
        keys = rng.sample(KEYS, rng.randint(1, len(KEYS)))
        held = [k for k in keys if rng.random() < 0.5]
        spend = rng.choice([0, 50_000, 220_000])
        queries = [q for q in QUERIES if q.key in keys]  # as the engine asks: its own keys
        attempt = {"keys": keys, "now": now, "spend_micros": spend, "held": held}
        expected = await reference.call("observe", queries=queries, **attempt)
        got = await subject.call("observe", queries=queries, **attempt)
        assert got == expected, (now, [q for q in queries if got[q] != expected[q]][:3])
        compared += 1
        long_reads += sum(1 for q in queries if q.window_seconds == 86_400 and got[q])
        if rng.random() < 0.1:  # a redelivery: its count is taken back
            for side in sides:
                await side.call("forget", **attempt)
            continue
        allowed = rng.random() < 0.7
        for side in sides:
            await side.call("settle", keys=held, now=now, spend_micros=spend, allowed=allowed)
        made.append((now, keys))
        if rng.random() < 0.3:  # a result arrives for an earlier attempt
            requested_at, success_keys = rng.choice(made[-40:])
            for side in sides:
                await side.call("record_success", keys=success_keys, requested_at=requested_at)
        if rng.random() < 0.1:
            peek = {"queries": QUERIES, "now": now, "spend_micros": spend}
            assert await subject.call("peek", **peek) == await reference.call("peek", **peek)
    assert compared > 100 and long_reads > 1_000


@pytest.mark.redis
@pytest.mark.parametrize("upgraded_after_hours", UPGRADES)
async def test_redis_windows_read_what_minutes_read(
    reference: Side, redis_url: str, upgraded_after_hours: float
) -> None:
    client = Redis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    redis = RedisCounters(client, bucket_seconds=60, retention_seconds=3 * 86_400, prefix=prefix)

    def old_code(active: bool) -> None:
        redis.hour = 0 if active else 3600

    async def upgrade_at(moment: datetime) -> None:
        await redis.start(moment)
        marker = await client.get(redis.marker)
        # A fresh prefix trusts every hour; an upgraded one, hours after the upgrade.
        assert marker == (b"0" if moment == START else str(redis.clock.bucket(moment)).encode())

    try:
        await _drive(
            reference, Side(redis), upgraded_after_hours=upgraded_after_hours,
            old_code=old_code, upgrade_at=upgrade_at,
        )  # fmt: skip
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_windows_read_what_sqlite_reads(reference: Side, database_url: str) -> None:
    """PostgreSQL reads its windows with other statements (one per attempt, per-key LATERAL
    sums under generic plans): over 30 hours they must read what SQLite reads."""
    engine = create_engine(database_url)

    async def nothing(_moment: datetime) -> None:
        return None

    try:
        await _drive(
            reference, Side(SqlCounters(60), engine), upgraded_after_hours=100,
            old_code=lambda _active: None, upgrade_at=nothing,
        )  # fmt: skip
    finally:
        await engine.dispose()
