"""The `days-from` marker lost (evicted under an allkeys-* maxmemory policy): the day hashes'
counts before it stay read, whether a write or a restart finds it missing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from app.store.counter_model import Attempt, BucketClock, Reads, WindowQuery
from app.store.redis_counters import RedisCounters

pytestmark = pytest.mark.redis

START = datetime(2026, 12, 4, 9, 42, 30, tzinfo=UTC)
LATER = START + timedelta(hours=2)
KEY = "country:SE"
DAY = [WindowQuery(KEY, 86_400, "attempts")]


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisCounters]:
    client = Redis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    counters = RedisCounters(client, bucket_seconds=60, retention_seconds=86_400, prefix=prefix)
    await counters.start(START)  # a fresh prefix: day hashes hold every count
    yield counters
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await counters.close()


async def _count(backend: RedisCounters, now: datetime, times: int = 1) -> None:
    for _ in range(times):
        attempt = Attempt.of({KEY}, set(), clock=BucketClock(60), now=now, spend=0)
        await backend.apply(None, attempt.counted())


async def _day(backend: RedisCounters) -> set[int]:
    return set((await backend.read(None, Reads(DAY, LATER))).values())


async def test_a_write_that_finds_the_marker_evicted_keeps_the_earlier_counts(
    backend: RedisCounters,
) -> None:
    await _count(backend, START, 2)
    await backend.redis.delete(backend.marker)
    await _count(backend, LATER)
    assert await _day(backend) == {3}


async def test_a_restart_that_finds_the_marker_evicted_keeps_the_earlier_counts(
    backend: RedisCounters,
) -> None:
    await _count(backend, START, 2)
    await backend.redis.delete(backend.marker)
    await backend.start(LATER)  # day hashes only: not an upgrade from the old layout
    assert await backend.redis.get(backend.marker) == b"0"
    await _count(backend, LATER)
    assert await _day(backend) == {3}
