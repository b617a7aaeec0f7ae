"""On PostgreSQL an allowed attempt's settle writes no counter row: its hold, written into the
allowed columns when it was counted, is its allowed count already. A denied attempt's
settle, applied by the decision's own store statement, takes the hold back exactly.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from app.rules.engine import compile_policy
from app.rules.starter import starter_policy
from app.services.aggregates import Counted
from app.store.base import create_engine
from app.store.counter_model import Attempt, BucketClock, Reads, WindowQuery
from app.store.counters import SqlCounters
from app.store.pg_batch_store import StoreItem, store_batch
from app.store.pg_fastpath import driver
from tests.store.test_store_statement import CLAIM, REQUEST

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

NOW = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)
HOT, HELD = "country:SE", "number:+46701234233"
READS = [WindowQuery(HELD, 3600, "allowed"), WindowQuery(HELD, 3600, "allowed_spend")]


def _item(tag: str, counted: Counted, *, allowed: bool) -> StoreItem:
    vid = f"v-{tag}"
    claim = dataclasses.replace(CLAIM, verification_id=vid, dedupe_key=f"request:{vid}")
    request = dataclasses.replace(REQUEST, id=vid, action="allow" if allowed else "deny")
    return StoreItem(claim, request, [], counted.settle_in_store(allowed=allowed))


async def test_an_allowed_settle_writes_no_counter_row_a_denied_one_takes_its_hold_back(
    database_url: str,
) -> None:
    engine = create_engine(database_url, autocommit=True)
    backend = SqlCounters(60)
    policy = compile_policy(starter_policy(), version=1)
    clock = BucketClock(60)
    ok = Attempt.of({HOT, HELD}, {HELD}, clock=clock, now=NOW, spend=50_000)
    no = Attempt.of({HOT, HELD}, {HELD}, clock=clock, now=NOW, spend=70_000)
    try:
        async with engine.connect() as conn:
            apg = await driver(conn)

            async def rows() -> dict[str, tuple[str, int, int]]:
                found = await apg.fetch(
                    "SELECT key, xmin::text AS x, allowed + pending AS a, "
                    "allowed_spend_micros + pending_spend_micros AS s FROM counters"
                )
                return {r["key"]: (r["x"], r["a"], r["s"]) for r in found}

            await backend.apply(conn, [*ok.counted(), *no.counted()])
            held = await backend.read(conn, Reads(READS, NOW))
            assert list(held.values()) == [2, 120_000]  # both held, as allowed
            before = await rows()

            allowed = Counted(backend, policy, ok, {})
            assert await store_batch(conn, [_item("ok", allowed, allowed=True)]) != [None]
            assert await rows() == before, "an allowed settle rewrote a counter row"
            assert not allowed.finishes(allowed=True, duplicate=False)

            denied = Counted(backend, policy, no, {})
            assert await store_batch(conn, [_item("no", denied, allowed=False)]) != [None]
            assert not denied.finishes(allowed=False, duplicate=False)  # done by the store
            after = await rows()
            assert after[HOT] == before[HOT]  # not held there: untouched
            assert after[HELD][0] != before[HELD][0]
            assert after[HELD][1:] == (1, 50_000)
            held = await backend.read(conn, Reads(READS, NOW))
            assert list(held.values()) == [1, 50_000]
    finally:
        await engine.dispose()
