"""ReplayCounters (a backtest's counters in arrays) read what the memory backend reads, for
one random history in time order: attempts, settles, and successes credited to earlier
buckets, under several keys and windows, with old buckets forgotten along the way."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.store.counter_model import Attempt, BucketClock, Reads, WindowQuery, succeeded
from app.store.memory_counters import MemoryCounters
from app.store.replay_counters import (
    ALLOWED,
    ALLOWED_SPEND,
    ATTEMPTS,
    SPEND,
    SUCCESSES,
    KeyCounts,
    ReplayCounters,
)

WINDOWS = (60, 90, 600, 3600)
KEYS = ("number:1", "number:2", "country:SE", "global")
COLUMNS = {
    "attempts": ATTEMPTS,
    "allowed": ALLOWED,
    "spend": SPEND,
    "allowed_spend": ALLOWED_SPEND,
    "successes": SUCCESSES,
}


# Windows read only for their successes keep a log of the buckets with successes instead of
# whole rows (a verified baseline over 14 days); they must read the same.
SUCCESS_ONLY = (False, True, False, True)


@pytest.mark.parametrize("only", [(), SUCCESS_ONLY], ids=["rows", "success-logs"])
@pytest.mark.parametrize("seed", range(5))
async def test_replay_counters_read_what_the_memory_backend_reads(
    seed: int, only: tuple[bool, ...]
) -> None:
    rng = random.Random(seed)
    memory = MemoryCounters(60, 3600 + 120)
    replay = ReplayCounters(60)
    layout = replay.layout(WINDOWS, only)
    clock = BucketClock(60)
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    earlier: list[tuple[tuple[KeyCounts, ...], tuple[str, ...], datetime]] = []
    for _ in range(600):
        now += timedelta(seconds=rng.choice((0, 1, 7, 30, 61, 200, 900)))
        keys = set(rng.sample(KEYS, rng.randint(1, 3)))
        spend = rng.randint(0, 9)
        attempt = Attempt.of(keys, keys, clock=clock, now=now, spend=spend)
        bucket = replay.bucket(now.timestamp())
        assert bucket == attempt.bucket
        counted = tuple(replay.at(key, layout, bucket) for key in attempt.keys)
        allowed = rng.random() < 0.7
        for counts in counted:
            counts.count(spend)
            if allowed:
                counts.allow(spend)
        settle = attempt.settled(allowed=allowed)
        assert (settle is None) == allowed  # an allowed settle writes nothing
        changes = [*attempt.counted(), *([settle] if settle is not None else [])]
        if earlier and rng.random() < 0.3:
            counts_then, keys_then, then = rng.choice(earlier[-50:])
            if (now - then).total_seconds() < 3600:
                changes.append(succeeded(set(keys_then), clock=clock, requested_at=then))
                for counts in counts_then:
                    counts.add_at(clock.bucket(then), SUCCESSES, 1)
        await memory.apply(None, changes)
        earlier.append((counted, attempt.keys, now))
        queries = [
            WindowQuery(key, window, measure)  # type: ignore[arg-type]
            for key in KEYS
            for window in WINDOWS
            for measure in COLUMNS
        ]
        expected = await memory.read(None, Reads(queries, now))
        for query in queries:
            counts = replay.keys.get(query.key)
            if counts is None or counts.bucket != bucket:
                continue  # a key is read only in the bucket it is counted in
            window = WINDOWS.index(query.window_seconds)
            if only and only[window] and query.measure != "successes":
                continue  # a success-only window keeps no other column
            read = counts.sums[window][COLUMNS[query.measure]]
            assert read == expected[query], query
        if rng.random() < 0.05:
            replay.forget_before(bucket - 3600 - 60)


def test_a_key_keeps_only_what_its_windows_read() -> None:
    """Rolling over, a key drops the rows its longest row-reading window no longer covers,
    and a window read only for its successes keeps just the buckets that have any: a key
    read over an hour and, for its successes, over 14 days holds about an hour of rows."""
    replay = ReplayCounters(60)
    layout = replay.layout((3600, 14 * 86_400), (False, True))
    start = replay.bucket(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
    counts = replay.at("range:+4670123", layout, start)
    minutes = 3 * 24 * 60
    for minute in range(minutes):
        bucket = start + minute * 60
        counts = replay.at("range:+4670123", layout, bucket)
        counts.count(1)
        if minute % 10 == 0:
            counts.add_at(bucket, SUCCESSES, 1)
    assert len(counts.rows) <= 2 * 60
    assert len(counts.log_buckets) == minutes // 10
    assert counts.sums[1][SUCCESSES] == minutes // 10
    assert counts.sums[0][ATTEMPTS] == 60
