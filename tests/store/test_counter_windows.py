"""Counter windows read the same on every backend (SQLite, PostgreSQL, Redis, memory).

The counter model (store/counter_model.py) says what each change means; the backends only
store changes and sum windows, each its own way: Redis keeps each minute's counts and,
beside them, each hour's, and reads whole hours from the hour totals; PostgreSQL and SQLite
do the same with `counter_hours` (kept by triggers), each with its own statements; memory
keeps minute dicts, and is what the SQL backends are held to over days of history.
SQLite is the reference of the rest.
Random attempts, settles, redeliveries and successes over 30 hours, with clock steps inside
a bucket and across minutes and hours, go to the reference and to the backends under test;
every window (10 min, 1 h, 24 h; attempts, spend, allowed, allowed spend, successes) must
read the same after each attempt, also when Redis's hour totals start mid-run (an upgrade:
minutes counted before have none).
"""

from __future__ import annotations

import random
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.base import create_engine
from app.store.counter_model import (
    Attempt,
    BucketClock,
    Measure,
    Reads,
    WindowQuery,
    succeeded,
)
from app.store.counters import SqlCounters
from app.store.memory_counters import MemoryCounters
from app.store.redis_counters import RedisCounters
from tests.store import redis_v1

KEYS = ["number:+46701234567", "range8:+4670123", "country:SE", "global"]
MEASURES: tuple[Measure, ...] = ("attempts", "spend", "allowed", "allowed_spend", "successes")
WINDOWS = (600, 3600, 86_400)
QUERIES = [WindowQuery(k, w, m) for k in KEYS for w in WINDOWS for m in MEASURES]
START = datetime(2026, 11, 20, 6, 17, 42, tzinfo=UTC)
UPGRADES = [0, 7.5, 100]
CLOCK = BucketClock(60)  # hours after START the hour totals start (0: fresh, 100: never)


@dataclass
class Side:
    """A backend under test, with the connection its calls run on (None: no database)."""

    backend: Any
    engine: AsyncEngine | None = None

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.engine is None:
            return await getattr(self.backend, method)(None, *args, **kwargs)
        async with self.engine.begin() as conn:
            return await getattr(self.backend, method)(conn, *args, **kwargs)


@pytest.fixture
async def reference(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Side]:
    path = tmp_path / "reference.db"
    shutil.copy(sqlite_template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    yield Side(SqlCounters(60), engine)
    await engine.dispose()


async def _everywhere(sides: Sequence[Side], method: str, *args: Any) -> list[Any]:
    return [await side.call(method, *args) for side in sides]


async def _upgrade(
    sides: Sequence[Side], upgrade_at: Callable[[datetime], Awaitable[None]], moment: datetime
) -> None:
    """The old code counts, then the new one, within the upgrade's hour: that hour's totals
    miss the first counts, so it must still be read minute by minute."""
    attempt = Attempt.of(
        set(KEYS), set(), clock=CLOCK, now=moment - timedelta(seconds=30), spend=50_000
    )
    await _everywhere(sides, "apply", attempt.counted())


async def _drive(
    reference: Side,
    *subjects: Side,
    upgraded_after_hours: float = 100,
    old_code: Callable[[bool], None] = lambda _active: None,
    upgrade_at: Callable[[datetime], Awaitable[None]] | None = None,
    seed: float | None = None,
    queries: Sequence[WindowQuery] = QUERIES,
    hours: int = 30,
) -> None:
    """A random history of attempts, settles, redeliveries, successes and reads, across
    buckets and hours, through every side: each must read the windows the reference reads."""
    rng = random.Random(upgraded_after_hours if seed is None else seed)
    hours_from = START + timedelta(hours=upgraded_after_hours)
    now, compared, long_reads, made = START, 0, 0, []
    sides = (reference, *subjects)
    old_code(bool(upgraded_after_hours))
    if not upgraded_after_hours and upgrade_at is not None:
        await upgrade_at(START)
    while now < START + timedelta(hours=hours):
        step = timedelta(seconds=rng.choice([0, 5, 45, 70, 300, 1100, 2900]))
        if upgrade_at is not None and now < hours_from <= now + step:
            await _upgrade(sides, upgrade_at, hours_from)
            old_code(False)
            await upgrade_at(hours_from)
            step = hours_from - now
        now += step
        keys = rng.sample(KEYS, rng.randint(1, len(KEYS)))
        held = {k for k in keys if rng.random() < 0.5}
        spend = rng.choice([0, 50_000, 220_000])
        attempt = Attempt.of(set(keys), held, clock=CLOCK, now=now, spend=spend)
        own = [q for q in queries if q.key in keys]  # as the engine asks: its own keys
        expected, *got = await _everywhere(sides, "observe", attempt.counted(), Reads(own, now))
        for side, values in zip(subjects, got, strict=True):
            wrong = [q for q in own if values[q] != expected[q]][:3]
            assert values == expected, (type(side.backend).__name__, now, wrong)
        compared += 1
        long_reads += sum(1 for q in own if q.window_seconds == 86_400 and expected[q])
        if rng.random() < 0.1:  # a redelivery: its count (and hold) is taken back
            await _everywhere(sides, "apply", attempt.forgotten())
            continue
        settle = attempt.settled(allowed=rng.random() < 0.7)
        if settle is not None:
            await _everywhere(sides, "apply", [settle])
        made.append((now, keys))
        if rng.random() < 0.3:  # a result arrives for an earlier attempt
            requested_at, success_keys = rng.choice(made[-40:])
            credit = succeeded(set(success_keys), clock=CLOCK, requested_at=requested_at)
            await _everywhere(sides, "apply", [credit])
        if rng.random() < 0.1:
            expected, *got = await _everywhere(sides, "read", Reads(queries, now))
            assert all(values == expected for values in got)
    assert compared > 100 and long_reads > 1_000


@pytest.mark.parametrize("seed", [1, 2])
async def test_memory_and_sqlite_read_the_same_windows(reference: Side, seed: int) -> None:
    await _drive(reference, Side(MemoryCounters(60, retention_seconds=3 * 86_400)), seed=seed)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_every_backend_reads_the_same_windows(
    reference: Side, database_url: str, redis_url: str
) -> None:
    """SQLite, PostgreSQL, Redis and memory through one random history: identical windows."""
    engine = create_engine(database_url)
    client = Redis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    redis = RedisCounters(client, bucket_seconds=60, retention_seconds=3 * 86_400, prefix=prefix)
    await redis.start(START)
    memory = MemoryCounters(60, retention_seconds=3 * 86_400)
    try:
        await _drive(reference, Side(SqlCounters(60), engine), Side(redis), Side(memory), seed=7)
    finally:
        await _drop(client, prefix)
        await engine.dispose()


async def _drop(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


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
        await _drop(client, prefix)


@pytest.mark.redis
@pytest.mark.parametrize("upgraded_after_hours", [0.6, 7.5])
async def test_redis_windows_read_the_same_across_the_day_hash_upgrade(
    reference: Side, redis_url: str, upgraded_after_hours: float
) -> None:
    """The version before (a hash per key and minute, and per hour: tests/store/redis_v1.py)
    counts, then this one (a hash per key and day) takes over mid-hour: windows reaching
    back before the upgrade still read what the old layout holds, the upgrade's hour is read
    in both (an old process still running counts there), and late credits to buckets before
    it go where those windows read."""
    client = Redis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    redis = RedisCounters(client, bucket_seconds=60, retention_seconds=3 * 86_400, prefix=prefix)
    scripts = {True: client.register_script(redis_v1.SCRIPT), False: redis._script}
    encoders = {True: redis_v1.args, False: redis._args}
    await client.set(f"{prefix}hours-from", 0)  # as the old version's start on a fresh prefix

    def old_code(active: bool) -> None:
        redis._script, redis._args = scripts[active], encoders[active]

    async def upgrade_at(moment: datetime) -> None:
        await redis.start(moment)
        assert await client.get(redis.marker) == str(redis.clock.bucket(moment)).encode()
        # A process of the old version, not yet stopped, counts after the marker was set.
        attempt = Attempt.of(set(KEYS[:2]), set(), clock=CLOCK, now=moment, spend=70_000)
        old_code(True)
        await redis.apply(None, attempt.counted())
        old_code(False)
        await reference.call("apply", attempt.counted())

    try:
        await _drive(
            reference, Side(redis), upgraded_after_hours=upgraded_after_hours,
            old_code=old_code, upgrade_at=upgrade_at,
        )  # fmt: skip
        names = {key.decode().removeprefix(prefix) async for key in client.scan_iter(f"{prefix}*")}
        assert any(":h" in name for name in names) and any(":d" in name for name in names)
    finally:
        await _drop(client, prefix)


@pytest.mark.redis
@pytest.mark.parametrize("size", [45, 300, 900])
async def test_redis_windows_read_what_memory_reads_with_other_buckets(
    redis_url: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buckets of 45 s (no 10-minute level), 5 and 15 minutes: the day hashes' levels and
    edges still read what memory (compared with SQLite above) reads."""
    monkeypatch.setattr(sys.modules[__name__], "CLOCK", BucketClock(size))
    client = Redis.from_url(redis_url)
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    redis = RedisCounters(client, bucket_seconds=size, retention_seconds=3 * 86_400, prefix=prefix)
    await redis.start(START)
    try:
        await _drive(
            Side(MemoryCounters(size, retention_seconds=3 * 86_400)), Side(redis), seed=size
        )
    finally:
        await _drop(client, prefix)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_windows_read_what_sqlite_reads(reference: Side, database_url: str) -> None:
    """PostgreSQL reads its windows with other statements (one per attempt, per-key LATERAL
    sums under generic plans): over 30 hours they must read what SQLite reads."""
    engine = create_engine(database_url)

    try:
        await _drive(reference, Side(SqlCounters(60), engine))
    finally:
        await engine.dispose()


LONG_WINDOWS = (60, 600, 3600, 5400, 7200, 86_400, 2 * 86_400 + 1800)
LONG_QUERIES = [WindowQuery(k, w, m) for k in KEYS for w in LONG_WINDOWS for m in MEASURES]


async def test_sql_windows_over_days_read_what_minutes_read(database_url: str) -> None:
    """SQLite and PostgreSQL read whole hours from `counter_hours` and only their edges
    from buckets: over 60 hours of attempts, settles, redeliveries and late successes,
    windows of one bucket to two days and a half read what memory's minutes read (memory
    is the reference here: it has no hour totals)."""
    memory = MemoryCounters(60, retention_seconds=4 * 86_400)
    engine = create_engine(database_url)
    try:
        await _drive(
            Side(memory), Side(SqlCounters(60), engine), seed=11, queries=LONG_QUERIES, hours=60
        )
    finally:
        await engine.dispose()
