"""Redis counters under concurrency: calls made together share script runs (round trips),
and a burst to one key still sees distinct totals, so a limit cuts it at exactly its value."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from app.store.counter_model import Attempt, BucketClock, Reads, WindowQuery
from app.store.redis_counters import RedisCounters

pytestmark = pytest.mark.redis

NOW = datetime(2026, 12, 4, 17, 42, 30, tzinfo=UTC)
KEY = "country:SE"


class CountingRedis(Redis):
    """A client that counts the script runs it sends (each one round trip)."""

    runs = 0

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.runs += 1
        return await super().evalsha(*args, **kwargs)


@pytest.fixture
async def counters(redis_url: str) -> AsyncIterator[tuple[RedisCounters, CountingRedis]]:
    client = CountingRedis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    backend = RedisCounters(client, bucket_seconds=60, retention_seconds=86_400, prefix=prefix)
    await backend.start(NOW)
    yield backend, client
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await backend.close()


def _attempt(number: int) -> Attempt:
    keys = {KEY, f"number:+4670{number:07d}"}
    return Attempt.of(keys, {KEY}, clock=BucketClock(60), now=NOW, spend=50_000)


READS = [
    WindowQuery(KEY, 3600, "attempts"),
    WindowQuery(KEY, 86_400, "allowed"),
    WindowQuery(KEY, 3600, "allowed_spend"),
]


async def test_a_concurrent_burst_shares_round_trips_and_sees_distinct_totals(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """50 attempts at once on one key: each sees its own total (1..50, so a limit of N lets
    exactly N through), in far fewer script runs than attempts (one each before)."""
    backend, client = counters
    burst = 50

    async def one(i: int) -> dict[WindowQuery, int]:
        totals = await backend.observe(None, _attempt(i).counted(), Reads(READS, NOW))
        assert totals is not None
        return totals

    seen = await asyncio.gather(*(one(i) for i in range(burst)))
    assert sorted(t[READS[0]] for t in seen) == list(range(1, burst + 1))
    assert sorted(t[READS[1]] for t in seen) == list(range(1, burst + 1))  # pending counts
    assert sorted(t[READS[2]] for t in seen) == [50_000 * n for n in range(1, burst + 1)]
    assert client.runs <= burst // 5, client.runs


async def test_a_burst_as_large_as_a_postgresql_batch_goes_in_one_run(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """200 attempts at once take one or two script runs (at most 64 calls a run took four),
    so batches form in Redis as large as PostgreSQL's (256 request events)."""
    backend, client = counters
    reads = Reads(READS[:1], NOW)
    seen = await asyncio.gather(
        *(backend.observe(None, _attempt(i).counted(), reads) for i in range(200))
    )
    assert sorted(t[READS[0]] for t in seen if t is not None) == list(range(1, 201))
    assert client.runs <= 2, client.runs


async def test_settles_made_together_go_with_the_reads_after_them(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """Settles and observes in flight together share runs, each applied in call order: an
    observe made after a settle reads it."""
    backend, client = counters
    attempts = [_attempt(i) for i in range(20)]
    for attempt in attempts:
        await backend.observe(None, attempt.counted(), Reads(READS, NOW))
    client.runs = 0
    calls: list[Any] = []
    for i, attempt in enumerate(attempts):
        settle = attempt.settled(allowed=i % 2 == 0)
        assert settle is not None
        calls.append(backend.apply(None, [settle]))
    calls.append(backend.read(None, Reads(READS, NOW)))
    *_, totals = await asyncio.gather(*calls)
    assert totals[READS[0]] == 20
    assert totals[READS[1]] == 10  # the denied half is no longer pending
    assert totals[READS[2]] == 10 * 50_000
    assert client.runs <= 2, client.runs


async def test_counts_in_a_later_minute_of_the_hour_are_not_read(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """A host whose clock runs ahead counts into a minute after this one: the hour's total
    holds it, so a window read from the hour's total less its other minutes must take it
    off (as the SQL backends, which sum buckets up to the current one)."""
    backend, _client = counters
    clock = BucketClock(60)
    ahead = Attempt.of({KEY}, set(), clock=clock, now=NOW.replace(minute=44), spend=0)
    now = Attempt.of({KEY}, set(), clock=clock, now=NOW, spend=0)
    await backend.apply(None, ahead.counted())
    await backend.apply(None, now.counted())
    queries = [WindowQuery(KEY, 3600, "attempts"), WindowQuery(KEY, 86_400, "attempts")]
    assert set((await backend.read(None, Reads(queries, NOW))).values()) == {1}
    later = await backend.read(None, Reads(queries, NOW.replace(minute=44)))
    assert set(later.values()) == {2}
