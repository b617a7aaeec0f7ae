"""What the group commit's statements make PostgreSQL do beyond their rows: the counting
batch reads hours and old edges only for the keys a long window reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.base import create_engine
from app.store.counter_model import BucketClock, CounterDeltas, Reads, WindowQuery
from app.store.pg_batch_count import CountItem, count_batch
from app.store.pg_fastpath import driver
from tests.conftest import _truncate

pytestmark = pytest.mark.postgres

CLOCK = BucketClock(60)
NOW = datetime(2026, 3, 2, 10, 30, 1, tzinfo=UTC)


@pytest.fixture
async def conn(postgres_database: str) -> AsyncIterator[AsyncConnection]:
    await _truncate(postgres_database)
    engine = create_engine(postgres_database, autocommit=True)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


def _attempt(number: str) -> CountItem:
    keys = ("country:SE", f"number:{number}", f"range:{number[:8]}")
    queries = [
        WindowQuery("country:SE", 86_400, "attempts"),
        WindowQuery("country:SE", 3_600, "allowed"),
        WindowQuery(f"number:{number}", 3_600, "attempts"),
        WindowQuery(f"range:{number[:8]}", 3_600, "attempts"),
    ]
    changes = (CounterDeltas(keys, CLOCK.bucket(NOW), {"attempts": 1}),)
    return CountItem(changes, Reads(queries, NOW), 0)


def _loops(plan: dict[str, Any], index: str) -> int:
    """How many times the plan scanned `index`."""
    own = plan.get("Actual Loops", 0) if plan.get("Index Name") == index else 0
    return int(own) + sum(_loops(child, index) for child in plan.get("Plans", ()))


async def test_hours_are_read_only_for_keys_a_long_window_reads(conn: AsyncConnection) -> None:
    apg = await driver(conn)
    plans: list[dict[str, Any]] = []

    def explained(_conn: object, message: Any) -> None:
        found = str(message.message)
        if "Plan" in found and "counters" in found:
            plans.append(json.loads(found[found.index("{") :])["Plan"])

    for setting in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_format = 'json'",
        "SET auto_explain.log_level = 'notice'",
    ):
        await apg.execute(setting)
    apg.add_log_listener(explained)
    try:
        totals = await count_batch(conn, CLOCK, [_attempt(f"+4670100{n:04d}") for n in range(6)])
    finally:
        apg.remove_log_listener(explained)
        await apg.execute("RESET ALL")

    assert [t[WindowQuery("country:SE", 86_400, "attempts")] for t in totals if t] == [
        1, 2, 3, 4, 5, 6
    ]  # fmt: skip
    (plan,) = plans
    # 8 keys counted (6 numbers, their range, the country): only the country's hours read
    assert _loops(plan, "pk_counter_hours") == 1
