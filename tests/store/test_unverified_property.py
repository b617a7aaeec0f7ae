"""Property: a success never increases an `unverified` count (attempts less successes), on
the counter model, whatever came before it and whenever it arrives (late, or twice)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.store.counter_model import Attempt, Reads, WindowQuery, succeeded
from app.store.memory_counters import MemoryCounters

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KEY = "range-3:+46701234"
WINDOW = 3600
QUERIES = (WindowQuery(KEY, WINDOW, "attempts"), WindowQuery(KEY, WINDOW, "successes"))

steps = st.lists(
    st.tuples(st.sampled_from(["attempt", "success"]), st.integers(0, 5400)), max_size=40
)


@settings(max_examples=60, deadline=None)
@given(history=steps, late=st.integers(0, 5400))
def test_a_success_never_increases_the_unverified_count(
    history: list[tuple[str, int]], late: int
) -> None:
    asyncio.run(_check(history, late))


async def _check(history: list[tuple[str, int]], late: int) -> None:
    counters = MemoryCounters(60, 8 * 86400)
    requested: list[datetime] = []
    now = START
    for kind, offset in sorted(history, key=lambda step: step[1]):
        now = START + timedelta(seconds=offset)
        if kind == "attempt" or not requested:
            attempt = Attempt.of({KEY}, set(), clock=counters.clock, now=now, spend=0)
            await counters.apply(None, attempt.counted())
            requested.append(now)
            continue
        before = await _unverified(counters, now)
        # A success for one of the earlier attempts, arriving now (late, or a second time).
        at = requested[offset % len(requested)]
        await counters.apply(None, [succeeded({KEY}, clock=counters.clock, requested_at=at)])
        assert await _unverified(counters, now) <= before
    end = now + timedelta(seconds=late)
    if requested:
        before = await _unverified(counters, end)
        change = succeeded({KEY}, clock=counters.clock, requested_at=requested[0])
        await counters.apply(None, [change])
        assert await _unverified(counters, end) <= before


async def _unverified(counters: MemoryCounters, now: datetime) -> int:
    totals = await counters.read(None, Reads(QUERIES, now))
    return max(0, totals[QUERIES[0]] - totals[QUERIES[1]])
