"""Redis counters under concurrency: calls made together share script runs (round trips),
and a burst to one key still sees distinct totals, so a limit cuts it at exactly its value."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from app.store.counter_model import Attempt, BucketClock, Reads, WindowQuery, succeeded
from app.store.redis_counters import RedisCounters
from tests.support import redis_commands, redis_counters

pytestmark = pytest.mark.redis

NOW = datetime(2026, 12, 4, 17, 42, 30, tzinfo=UTC)
KEY = "country:SE"


class CountingRedis(Redis):
    """A client that counts the script runs it sends (each one round trip)."""

    runs = 0
    streams: list[Any]  # each run's calls, as the script takes them (ARGV[5])

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.runs += 1
        self._note(args[2 + args[1] + 4])
        return await super().evalsha(*args, **kwargs)

    async def fcall(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.runs += 1
        self._note(args[2 + args[1] + 4])
        return await super().fcall(*args, **kwargs)

    def _note(self, stream: Any) -> None:
        if not hasattr(self, "streams"):
            self.streams = []
        self.streams.append(stream)


@pytest.fixture
async def counters(redis_url: str) -> AsyncIterator[tuple[RedisCounters, CountingRedis]]:
    client = CountingRedis.from_url(redis_url)
    async with redis_counters(client, NOW) as backend:
        yield backend, client


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
        assert (settle is None) == (i % 2 == 0)  # an allowed one's writes nothing
        if settle is not None:
            calls.append(backend.apply(None, [settle]))
    calls.append(backend.read(None, Reads(READS, NOW)))
    *_, totals = await asyncio.gather(*calls)
    assert totals[READS[0]] == 20
    assert totals[READS[1]] == 10  # the denied half is no longer held
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


async def test_a_runs_calls_go_as_8_byte_integers_and_read_back_exactly(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """A run's calls go as one string of 8-byte integers, unpacked in C 64 at a time
    (splitting a string of decimal tokens with gmatch was ~8 % of the server's instructions
    per attempt): runs spanning several chunks, with amounts past 32 bits and negative
    deltas (redeliveries forgotten), read back exact totals."""
    backend, client = counters
    big = 3_000_000_000  # micros: past 32 bits
    clock = BucketClock(60)
    attempts = [
        Attempt.of({KEY, f"number:+4670{i:07d}"}, {KEY}, clock=clock, now=NOW, spend=big)
        for i in range(40)
    ]
    reads = Reads(READS, NOW)
    seen = await asyncio.gather(*(backend.observe(None, a.counted(), reads) for a in attempts))
    assert sorted(t[READS[2]] for t in seen if t) == [big * n for n in range(1, 41)]
    await asyncio.gather(*(backend.apply(None, a.forgotten()) for a in attempts[:10]))
    assert await backend.read(None, reads) == {READS[0]: 30, READS[1]: 30, READS[2]: 30 * big}
    numbers: list[int] = []
    for stream in client.streams:
        assert isinstance(stream, bytes) and len(stream) % (8 * 64) == 0, stream[:80]
        numbers += struct.unpack(f"<{len(stream) // 8}q", stream)
    assert big in numbers and -big in numbers
    assert max(len(s) for s in client.streams) > 8 * 64  # a run of several chunks


async def test_a_call_counts_only_under_the_policy_version_redis_keeps(
    redis_url: str,
) -> None:
    """Calls in one run, each under the version it was planned for: those at the version
    the `policy-version` key holds count and read; the others (an older version, or none
    kept at all) count nothing and come back None; calls that check no version count."""
    client = CountingRedis.from_url(redis_url)
    async with redis_counters(client, NOW) as plain:
        backend = RedisCounters(
            client,
            bucket_seconds=60,
            retention_seconds=86_400,
            prefix=plain.prefix,
            checks_version=True,
        )
        assert backend.capabilities.checks_policy_version
        reads = Reads(READS, NOW)
        attempts = [_attempt(i) for i in range(6)]
        unkept = await backend.observe(None, attempts[0].counted(), reads, version=7)
        assert unkept is None
        await client.set(f"{plain.prefix}policy-version", 7)
        client.runs = 0
        seen = await asyncio.gather(
            *(
                backend.observe(None, a.counted(), reads, version=v)
                for a, v in zip(attempts, [7, 6, 7, None, 8, 7], strict=True)
            )
        )
        assert client.runs <= 2, "the calls did not share runs"
        assert [t is None for t in seen] == [False, True, False, False, True, False]
        assert sorted(t[READS[0]] for t in seen if t) == [1, 2, 3, 4]
        assert (await backend.read(None, reads))[READS[0]] == 4


STARTER_READS = [  # the windows the starter policy reads for one attempt (app/rules/starter.py)
    ("country", 86_400, "attempts"),
    ("range", 3600, "attempts"),
    ("number", 3600, "attempts"),
    ("country", 3600, "allowed"),
    ("country", 3600, "successes"),
    ("range", 3600, "allowed"),
    ("country", 3600, "allowed_spend"),
    ("number", 3600, "successes"),
    ("country", 86_400, "successes"),
    ("range", 3600, "successes"),
]


async def test_an_attempt_under_the_starter_windows_takes_few_redis_commands(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """Count, window reads, settle and success of one attempt, mid-hour (where a window's
    edges cover half an hour each): one HMGET per day hash the windows read (one per window
    and day hash took 12; a hash per minute and hour ~230, and the Redis server's CPU was
    the limit), and ~58 commands in all (~66, ~290)."""
    backend, client = counters
    now = NOW.replace(minute=30)
    attempts = 10

    async def work() -> None:
        for i in range(attempts):
            keys = {"country": KEY, "range": "range8:+4670123", "number": f"number:+4670123{i:04d}"}
            attempt = Attempt.of(
                set(keys.values()), {KEY, keys["range"]}, clock=BucketClock(60), now=now, spend=9
            )
            reads = [WindowQuery(keys[k], window, m) for k, window, m in STARTER_READS]
            await backend.observe(None, attempt.counted(), Reads(reads, now))
            assert attempt.settled(allowed=True) is None  # an allowed settle writes nothing
            credit = succeeded(set(keys.values()), clock=BucketClock(60), requested_at=now)
            await backend.apply(None, [credit])

    counts = await redis_commands(client, backend.prefix, work, by_scripts=True)
    assert counts["HMGET"] <= 4 * attempts, counts  # the country's 2 days, range, number
    assert counts.total() <= 60 * attempts, counts


async def test_a_run_reads_and_writes_a_shared_key_once_for_all_its_calls(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """20 attempts at once on one key (and a number each) share script runs, and in a run
    the shared key's day hashes are read once and its fields written once with the calls'
    summed deltas: each call took one HMGET per window and day hash and an HINCRBY per
    field, level and key (360 and 60+). The key's hash, made by the first run, is one HSET
    (its fields are that run's deltas: a fresh hash, below)."""
    backend, client = counters
    burst = 20

    async def work() -> None:
        reads = Reads(READS, NOW)
        await asyncio.gather(
            *(backend.observe(None, _attempt(i).counted(), reads) for i in range(burst))
        )

    counts = await redis_commands(client, backend.prefix, work, by_scripts=True)
    runs = client.runs
    assert runs <= 2, runs
    # KEY: 4 fields (attempts, spend, allowed, allowed spend) at 3 levels, once a run; each
    # number: 2 fields (attempts, spend) at 3 levels.
    assert counts["HSET"] == 1, counts
    assert counts["HINCRBY"] == 12 * (runs - 1) + 6 * burst, (counts, runs)
    assert counts["HMGET"] <= 2 * (runs - 1), (counts, runs)  # the day and the day before


async def test_a_keys_first_attempt_of_the_day_makes_its_hash_in_one_write(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """Most numbers and ranges are seen once a day: a run that finds a key's day hash
    missing knows its fields (the run's own deltas) without reading them, and makes it with
    one HSET and its expiry (before: an HMGET of the windows' fields, an HINCRBY per field
    and level, TTL and HLEN: 10 commands here besides the marker's GET, 3 now). Its totals are the same, and the
    next attempt reads and adds to what it wrote."""
    backend, client = counters
    number = "number:+46701234567"
    reads = Reads([WindowQuery(number, 3600, "attempts"), WindowQuery(number, 3600, "spend")], NOW)

    def attempt() -> Attempt:
        return Attempt.of({number}, set(), clock=BucketClock(60), now=NOW, spend=7)

    seen: list[dict[WindowQuery, int] | None] = []

    async def first() -> None:
        seen.append(await backend.observe(None, attempt().counted(), reads))

    counts = await redis_commands(client, backend.prefix, first, by_scripts=True)
    assert seen == [dict(zip(reads.queries, [1, 7], strict=True))]
    assert counts == {"GET": 1, "EXISTS": 1, "HSET": 1, "EXPIRE": 1}, counts  # GET: the marker
    hashes = [key async for key in client.scan_iter(f"{backend.prefix}{number}:d*")]
    assert len(hashes) == 1 and await client.ttl(hashes[0]) > 86_400, hashes
    assert len(await client.hgetall(hashes[0])) == 6  # attempts and spend, at 3 levels
    totals = await backend.observe(None, attempt().counted(), reads)
    assert totals == dict(zip(reads.queries, [2, 14], strict=True))


async def test_a_run_on_hashes_that_grow_no_field_checks_no_expiry_or_size(
    counters: tuple[RedisCounters, CountingRedis],
) -> None:
    """A second attempt in the same minute on the same keys adds to fields that all hold a
    count already: its run sends no TTL or HLEN (the run that made the hashes set their
    expiry and checked their size; before, every run sent both for each hash it wrote). The
    next minute's attempt adds its bucket's fields, and the hashes are checked again: one
    made without an expiry (here by hand) gets it."""
    backend, client = counters
    reads = Reads(READS, NOW)
    assert await backend.observe(None, _attempt(1).counted(), reads) is not None

    async def again() -> None:
        assert await backend.observe(None, _attempt(1).counted(), reads) is not None

    counts = await redis_commands(client, backend.prefix, again, by_scripts=True)
    assert counts["HINCRBY"] > 0, counts
    assert counts["TTL"] == counts["HLEN"] == counts["EXPIRE"] == 0, counts
    hashes = [key async for key in client.scan_iter(f"{backend.prefix}*:d*")]
    assert len(hashes) == 2, hashes  # the country's and the number's day
    for key in hashes:
        assert await client.ttl(key) > 0, key
        await client.persist(key)
    later = NOW.replace(minute=43)
    attempt = Attempt.of(
        {KEY, f"number:+4670{1:07d}"}, {KEY}, clock=BucketClock(60), now=later, spend=1
    )
    assert await backend.observe(None, attempt.counted(), Reads(READS, later)) is not None
    for key in hashes:
        assert await client.ttl(key) > 0, key
