"""Redis counters answer what SQL counters answer, over days of attempts.

Redis keeps each minute's counts and, beside them, each hour's; a long window is read from
whole hours where it can. Random attempts, settles, redeliveries and successes over 30
hours go to both backends; every window (10 min, 1 h, 24 h; attempts, spend, allowed,
allowed spend, successes) must read the same after each attempt, including while minutes
counted before the hours existed (an upgrade) are still inside the windows.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.base import create_engine
from app.store.buckets import Measure, WindowQuery
from app.store.counters import SqlCounters
from app.store.redis_counters import RedisCounters

pytestmark = [
    pytest.mark.redis,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

KEYS = ["number:+46701234567", "range8:+4670123", "country:SE", "global"]
MEASURES: tuple[Measure, ...] = ("attempts", "spend", "allowed", "allowed_spend", "successes")
WINDOWS = (600, 3600, 86_400)
QUERIES = [WindowQuery(k, w, m) for k in KEYS for w in WINDOWS for m in MEASURES]
START = datetime(2026, 11, 20, 6, 17, 42, tzinfo=UTC)


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisCounters]:
    client = Redis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    yield RedisCounters(client, bucket_seconds=60, retention_seconds=3 * 86_400, prefix=prefix)
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.parametrize("upgraded_after_hours", [0, 7.5, 100])  # 100: never
async def test_redis_windows_read_what_sql_windows_read(
    sql: AsyncEngine, redis: RedisCounters, upgraded_after_hours: float
) -> None:
    """`upgraded_after_hours`: Redis counts minutes only (as before hour hashes) until then."""
    rng = random.Random(upgraded_after_hours)
    sql_counters = SqlCounters(60)
    hours_from = START + timedelta(hours=upgraded_after_hours)
    now, compared, long_reads = START, 0, 0
    if not upgraded_after_hours:
        await redis.start(START)  # a fresh prefix: hours are trusted from the start
        assert await redis.redis.get(redis.marker) == b"0"
    made: list[tuple[datetime, list[str]]] = []
    while now < START + timedelta(hours=30):
        step = timedelta(seconds=rng.choice([0, 5, 45, 70, 300, 1100, 2900]))
        if now < hours_from <= now + step:
            # The old code counts, then the new one, within the upgrade's hour: that hour's
            # hashes miss the first counts, so it must still be read minute by minute.
            redis.hour, before = 0, hours_from - timedelta(seconds=30)
            for backend, is_sql in ((sql_counters, True), (redis, False)):
                async with sql.begin() as conn:
                    await backend.observe(
                        conn if is_sql else None, keys=KEYS, queries=[], now=before,
                        spend_micros=50_000,
                    )  # fmt: skip
            step = hours_from - now
            redis.hour = 3600
            await redis.start(hours_from)  # the upgraded worker starts: counts exist
            marker = await redis.redis.get(redis.marker)
            assert marker == str(redis.clock.bucket(hours_from)).encode()
        now += step
        redis.hour = 3600 if now >= hours_from else 0  # before: the minutes-only code
        keys = rng.sample(KEYS, rng.randint(1, len(KEYS)))
        held = [k for k in keys if rng.random() < 0.5]
        spend = rng.choice([0, 50_000, 220_000])
        queries = [q for q in QUERIES if q.key in keys]  # as the engine asks: its own keys
        async with sql.begin() as conn:
            expected = await sql_counters.observe(
                conn, keys=keys, queries=queries, now=now, spend_micros=spend, held=held
            )
        got = await redis.observe(
            None, keys=keys, queries=queries, now=now, spend_micros=spend, held=held
        )
        assert got == expected, (now, [q for q in queries if got[q] != expected[q]][:3])
        compared += 1
        long_reads += sum(1 for q in queries if q.window_seconds == 86_400 and got[q])
        backends = ((sql_counters, True), (redis, False))
        if rng.random() < 0.1:  # a redelivery: its count is taken back
            for backend, is_sql in backends:
                async with sql.begin() as conn:
                    await backend.forget(
                        conn if is_sql else None, keys=keys, now=now, spend_micros=spend,
                        held=held,
                    )  # fmt: skip
            continue
        allowed = rng.random() < 0.7
        for backend, is_sql in backends:
            async with sql.begin() as conn:
                await backend.settle(
                    conn if is_sql else None, keys=held, now=now, spend_micros=spend,
                    allowed=allowed,
                )  # fmt: skip
        made.append((now, keys))
        if made and rng.random() < 0.3:  # a result arrives for an earlier attempt
            requested_at, success_keys = rng.choice(made[-40:])
            for backend, is_sql in backends:
                async with sql.begin() as conn:
                    await backend.record_success(
                        conn if is_sql else None, keys=success_keys, requested_at=requested_at
                    )
        if rng.random() < 0.1:
            async with sql.begin() as conn:
                expected = await sql_counters.peek(
                    conn, queries=QUERIES, now=now, spend_micros=spend
                )
            got = await redis.peek(None, queries=QUERIES, now=now, spend_micros=spend)
            assert got == expected, now
    assert compared > 100 and long_reads > 1_000
