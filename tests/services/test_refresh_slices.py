"""The baseline refresh hands its work to the event loop a slice at a time (services/
periodic.py): however many verifications changed since the last refresh, between two turns
of the loop it adds at most SLICE keys to a baseline's counts or to a history's first
attempts; and it applies them after its snapshot is read (`read`, then `apply` without a
connection), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta
from typing import cast

from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.aggregates import BaselineSpec, HistorySpec
from app.rules.engine import CompiledPolicy
from app.services.baselines import BaselineCache
from app.services.periodic import SLICE
from tests.services.stored_history import request_in, result_in
from tests.services.test_verified_counts import Policy
from tests.store.test_baselines import NOW

NUMBER_1H = BaselineSpec("number", None, 3_600, None)  # a key per number
NUMBER_HISTORY = HistorySpec("number", None, 86_400)
POLICY = cast(CompiledPolicy, Policy({NUMBER_1H: 1}, frozenset({NUMBER_HISTORY})))
NEW = 2 * SLICE + 300  # verifications since the last refresh, each a new number


async def test_a_refresh_adds_at_most_a_slice_of_keys_between_two_loop_turns(
    engine: AsyncEngine,
) -> None:
    cache = BaselineCache()
    async with engine.connect() as conn:
        await cache.refresh(conn, POLICY, NOW)
    async with engine.begin() as conn:  # one transaction: the claims as the intake's
        for i in range(NEW):
            ident, at = str(uuid.uuid4()), NOW + timedelta(milliseconds=i)
            await request_in(conn, ident, f"+4670{i:07d}", at=at)
            await result_in(conn, ident, "SUCCESSFUL", at=at + timedelta(seconds=1))
    later = NOW + timedelta(seconds=30)
    async with engine.connect() as conn:
        read = await cache.read(conn, POLICY, later)
    counts, firsts = read.verified[NUMBER_1H], read.seen[NUMBER_HISTORY]
    sizes: list[tuple[int, int]] = []
    applied = asyncio.Event()

    async def watch() -> None:  # a turn of the loop each time round, as a request has
        while not applied.is_set():
            sizes.append((len(counts.totals), len(firsts.first)))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await cache.apply(POLICY, read, later)
    applied.set()
    await watcher
    sizes.append((len(counts.totals), len(firsts.first)))
    assert sizes[0] == (0, 0) and sizes[-1] == (NEW, NEW)
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(sizes)]
    assert max(max(step) for step in steps) <= SLICE
    assert len(cache.snapshot()[NUMBER_HISTORY.id]) == NEW


async def test_a_refresh_past_a_claim_never_committed_counts_what_a_full_read_counts(
    engine: AsyncEngine,
) -> None:
    policy = cast(CompiledPolicy, Policy({NUMBER_1H: 0}, frozenset({NUMBER_HISTORY})))
    cache = BaselineCache()
    async with engine.connect() as conn:
        await cache.refresh(conn, policy, NOW)
    for i in range(6):  # the third's claim rolled back: on PostgreSQL its id is a gap
        ident, at = str(uuid.uuid4()), NOW + timedelta(seconds=i)
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await request_in(conn, ident, f"+4670{i:07d}", at=at)
            await result_in(conn, ident, "SUCCESSFUL", at=at + timedelta(seconds=1))
            await (transaction.rollback() if i == 2 else transaction.commit())
    later, fresh = NOW + timedelta(seconds=30), BaselineCache()
    async with engine.connect() as conn:
        await cache.refresh(conn, policy, later)
        await fresh.refresh(conn, policy, later)
    assert cache.snapshot() == fresh.snapshot()
    assert len(cache.snapshot()[NUMBER_1H.id]) == len(cache.snapshot()[NUMBER_HISTORY.id]) == 5
