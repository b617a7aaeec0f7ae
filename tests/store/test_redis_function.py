"""The counters' script runs as a Redis function (FCALL), whose library keeps what runs plan
and name from one run to the next, and is loaded again when Redis lost it."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.store.counter_model import Attempt, BucketClock, Reads, WindowQuery
from app.store.redis_counters import _SCRIPT, LIBRARY, RedisCounters, _Function
from tests.support import redis_commands, redis_counters

pytestmark = pytest.mark.redis

NOW = datetime(2026, 12, 4, 17, 42, 30, tzinfo=UTC)
KEY = "country:SE"
READS = Reads([WindowQuery(KEY, 3600, "attempts"), WindowQuery(KEY, 86_400, "attempts")], NOW)


@pytest.fixture
async def counters(redis_url: str) -> AsyncIterator[tuple[RedisCounters, Redis]]:
    client = Redis.from_url(redis_url)
    async with redis_counters(client, NOW) as backend:
        yield backend, client


async def _count(backend: RedisCounters) -> int:
    attempt = Attempt.of({KEY}, set(), clock=BucketClock(60), now=NOW, spend=0)
    totals = await backend.observe(None, attempt.counted(), READS)
    assert totals is not None
    assert len(set(totals.values())) == 1, totals
    return next(iter(totals.values()))


async def test_runs_are_calls_of_a_function_not_scripts(
    counters: tuple[RedisCounters, Redis],
) -> None:
    """Each run is one FCALL (an EVALSHA run planned its windows and named their fields
    afresh: ~20 % of the Redis server's instructions at 4 calls a run)."""
    backend, client = counters
    assert await _count(backend) == 1  # the library loaded, if this server had none

    async def work() -> None:
        assert [await _count(backend) for _ in range(3)] == [2, 3, 4]

    sent = await redis_commands(client, backend.prefix, work, by_scripts=False)
    assert sent == Counter({"FCALL": 3}), sent


async def test_a_lost_library_is_loaded_again(counters: tuple[RedisCounters, Redis]) -> None:
    """Redis restarted without its functions (or FUNCTION DELETE): the next run loads the
    library and counts on."""
    backend, client = counters
    assert await _count(backend) == 1
    libraries = await client.function_list(library="verifyguard_counters_*")
    assert len(libraries) >= 1, libraries
    mine = backend._script.name  # type: ignore[attr-defined]
    await client.function_delete(mine)
    assert await _count(backend) == 2
    assert await client.function_list(library=mine)


async def test_a_user_who_may_not_call_functions_counts_through_scripts(
    counters: tuple[RedisCounters, Redis], redis_url: str
) -> None:
    """A Redis user whose ACL allows scripts but not functions: the refused FCALL ran
    nothing, and every run goes through EVALSHA (refused, each run would fail: every answer
    the fallback)."""
    backend, client = counters
    user = f"vgtest-{uuid.uuid4().hex[:12]}"
    await client.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], channels=["*"],
        commands=["+@all", "-fcall", "-function"],
    )  # fmt: skip
    limited = Redis.from_url(redis_url, username=user, password="secret")
    other = RedisCounters(
        limited, bucket_seconds=60, retention_seconds=86_400, prefix=backend.prefix
    )
    try:
        assert [await _count(other) for _ in range(3)] == [1, 2, 3]
        refused = [e for e in await client.acl_log() if e["username"] == user]
        assert [e["object"] for e in refused] == ["fcall"], refused
    finally:
        await other.close()
        await client.acl_deluser(user)


def _version_before(client: Redis, prefix: str) -> RedisCounters:
    """Counters under `prefix` whose script is another version's (its library named apart)."""
    backend = RedisCounters(client, bucket_seconds=60, retention_seconds=86_400, prefix=prefix)
    backend._script = _Function(client, f"{_SCRIPT}\n-- the version before\n")  # type: ignore[attr-defined]
    return backend


async def _libraries(client: Redis) -> set[str]:
    listed = await client.function_list(library=f"{LIBRARY}*")
    return {dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"].decode() for lib in listed}


async def test_a_start_deletes_the_other_versions_libraries_and_both_count_on(
    redis_url: str,
) -> None:
    """Each deployed version loads a library of its own: a start deletes the others', or they
    piled up deploy after deploy. In a rolling deploy the version still running finds its
    library gone, loads it again and counts on (no run fails), and prunes nothing then: the
    new version's library stays."""
    before_client, client = Redis.from_url(redis_url), Redis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    before = _version_before(before_client, prefix)
    backend = RedisCounters(client, bucket_seconds=60, retention_seconds=86_400, prefix=prefix)
    old, new = before._script.name, backend._script.name  # type: ignore[attr-defined]
    try:
        await before.start(NOW)
        assert await _count(before) == 1
        assert old in await _libraries(client)
        await backend.start(NOW)
        assert await _libraries(client) & {old, new} == set()  # nothing of this prefix loaded
        assert await _count(before) == 2  # its library loaded again
        assert await _count(backend) == 3
        assert await _count(before) == 4
        assert {old, new} <= await _libraries(client)
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        with contextlib.suppress(ResponseError):
            await client.function_delete(old)
        await before.close()
        await backend.close()
