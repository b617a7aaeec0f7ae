"""What the group commit's statements make PostgreSQL do beyond their rows: the counting
batch reads hours and old edges only for the keys a long window reads, and a stored
decision without a rule name or reference writes no entry into those columns' indexes
(migration 0014), which still serve a lookup by value.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.counter_model import BucketClock, CounterDeltas, Reads, WindowQuery
from app.store.pg_batch_count import CountItem, count_batch
from app.store.pg_batch_store import StoreItem, store_batch
from app.store.pg_fastpath import driver
from tests.store.test_batch_store_rows import _item

pytestmark = pytest.mark.postgres

CLOCK = BucketClock(60)
NOW = datetime(2026, 3, 2, 10, 30, 1, tzinfo=UTC)
PAGE = 8192  # a B-tree's metapage: the whole index while it holds no entry


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


def _plain(tag: str) -> StoreItem:
    """A decided request event with no rule name and no reference (most of them)."""
    item = _item(tag, awkward=False)
    verification = dataclasses.replace(item.verification, rule_name=None, reference=None)
    return StoreItem(item.claim, verification, (), None)


async def _size(conn: AsyncConnection, index: str) -> int:
    found = await conn.execute(text("SELECT pg_relation_size(CAST(:i AS regclass))"), {"i": index})
    return int(found.scalar_one())


async def test_a_decision_without_rule_or_reference_writes_no_entry_for_them(
    conn: AsyncConnection,
) -> None:
    assert all(await store_batch(conn, [_plain(f"p{n}") for n in range(40)]))

    assert await _size(conn, "ix_verifications_rule_name_requested_at") == PAGE
    assert await _size(conn, "ix_verifications_reference") == PAGE
    assert await _size(conn, "ix_verifications_number_requested_at") > PAGE

    assert all(await store_batch(conn, [_item("named", awkward=False)]))
    assert await _size(conn, "ix_verifications_reference") > PAGE
    # A lookup by value, planned without the value (generic), still reads the index.
    apg = await driver(conn)
    await apg.execute("SET enable_seqscan = off")
    try:
        for column, index in (
            ("reference", "ix_verifications_reference"),
            ("rule_name", "ix_verifications_rule_name_requested_at"),
        ):
            query = f"SELECT id FROM verifications WHERE {column} = $1"
            assert [tuple(row) for row in await apg.fetch(query, "plain")] == [("v-named",)]
            await apg.execute(f"PREPARE by_value(text) AS {query}")
            plan = await apg.fetch("EXPLAIN EXECUTE by_value('plain')")
            await apg.execute("DEALLOCATE by_value")
            assert index in "\n".join(row[0] for row in plan)
    finally:
        await apg.execute("RESET enable_seqscan")
