"""The batch counting statement (pg_batch_count.py) returns each attempt the totals the
one-attempt statement (pg_counters.py) returns when the same attempts are counted one after
another: every measure, windows reaching into older buckets, awkward keys included.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.counter_model import BucketClock, CounterDeltas, Reads, Totals, WindowQuery
from app.store.pg_batch_count import CountItem, count_batch
from app.store.pg_counters import PgCounters

pytestmark = pytest.mark.postgres

CLOCK = BucketClock(60)
KEYS = ("number:+46700000001", 'range:"quoted" \\ back', "country:é漢🙂", "global")
MEASURES = ("attempts", "allowed", "spend", "allowed_spend")
WINDOWS = (60, 3600, 86400)


def _attempts(prefix: str, now: datetime, count: int) -> list[tuple[CountItem, Reads]]:
    rng = random.Random(7)
    out = []
    for _ in range(count):
        keys = tuple(sorted(f"{prefix}{k}" for k in rng.sample(KEYS, rng.randint(1, 3))))
        held = keys[: rng.randint(0, len(keys))]
        spend = rng.randint(0, 900_000)
        changes = [CounterDeltas(keys, CLOCK.bucket(now), {"attempts": 1, "spend_micros": spend})]
        if held:
            deltas = {"pending": 1, "pending_spend_micros": spend}
            changes.append(CounterDeltas(held, CLOCK.bucket(now), deltas))
        queries = [
            WindowQuery(key, rng.choice(WINDOWS), rng.choice(MEASURES))  # type: ignore[arg-type]
            for key in keys
        ]
        reads = Reads(queries, now)
        out.append((CountItem(tuple(changes), reads, 0), reads))
    return out


def _renamed(totals: Totals, prefix: str) -> dict[tuple[str, int, str], int]:
    return {(q.key.removeprefix(prefix), q.window_seconds, q.measure): v for q, v in totals.items()}


async def test_batches_see_what_attempts_counted_one_by_one_see(conn: AsyncConnection) -> None:
    counters = PgCounters(CLOCK)
    now = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)
    one, batched = [], []
    # Two older buckets, then the current one: windows reach back into both.
    for minutes, count in ((-30, 9), (-1, 7), (0, 24)):
        moment = now + timedelta(minutes=minutes)
        for item, reads in _attempts("one/", moment, count):
            found = await counters.observe(conn, item.changes, reads, version=0)
            assert found is not None
            one.append(_renamed(found, "one/"))
        items = [item for item, _ in _attempts("batch/", moment, count)]
        for start in range(0, count, 5):  # batches of 5, and one shorter
            for found in await count_batch(conn, CLOCK, items[start : start + 5]):
                assert found is not None
                batched.append(_renamed(found, "batch/"))
    assert batched == one
    assert any(v > 0 for totals in one for v in totals.values())
