"""ReplayWindows (a backtest's running window sums) reads what the memory backend reads, for
one random history in time order: attempts, settles, and successes credited to earlier
buckets, under several keys and windows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.store.counter_model import Attempt, BucketClock, Reads, WindowQuery, succeeded
from app.store.memory_counters import MemoryCounters
from app.store.replay_windows import ReplayWindows

WINDOWS = (60, 90, 600, 3600)
MEASURES = ("attempts", "allowed", "spend", "allowed_spend", "successes")
KEYS = ("number:1", "number:2", "country:SE", "global")


@pytest.mark.parametrize("seed", range(5))
async def test_replay_windows_read_what_the_memory_backend_reads(seed: int) -> None:
    rng = random.Random(seed)
    memory = MemoryCounters(60, 3600 + 120)
    replay = ReplayWindows(60)
    clock = BucketClock(60)
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    earlier: list[tuple[tuple[str, ...], datetime]] = []
    for _ in range(600):
        now += timedelta(seconds=rng.choice((0, 1, 7, 30, 61, 200, 900)))
        keys = set(rng.sample(KEYS, rng.randint(1, 3)))
        attempt = Attempt.of(
            keys, set(rng.sample(sorted(keys), 1)), clock=clock, now=now, spend=rng.randint(0, 9)
        )
        queries = [
            WindowQuery(key, window, measure)  # type: ignore[arg-type]
            for key in KEYS
            for window in WINDOWS
            for measure in MEASURES
        ]
        reads = Reads(queries, now)
        seen = await memory.observe(None, attempt.counted(), reads)
        assert seen == await replay.observe(None, attempt.counted(), reads)
        settle = attempt.settled(allowed=rng.random() < 0.7)
        changes = [settle] if settle else []
        if earlier and rng.random() < 0.3:
            keys_then, then = rng.choice(earlier[-50:])
            if (now - then).total_seconds() < 3600:
                changes.append(succeeded(set(keys_then), clock=clock, requested_at=then))
        await memory.apply(None, changes)
        await replay.apply(None, changes)
        earlier.append((attempt.keys, now))
        if rng.random() < 0.05:
            replay.forget_before(clock.bucket(now) - 3600 - 60)
