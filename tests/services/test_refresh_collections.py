"""The baseline refresh sets off no collection of the garbage collector while it runs
(app/gc_settings.py `young_collections_paused`): every collection inside it traversed its
thousands of changes and rows on the event loop, a stall for every request behind it. Its
garbage is freed by reference counts as it drops it; collections resume after it, and
nothing it kept is lost. On SQLite and PostgreSQL, with a stored policy whose adaptive limit
reads a verified baseline, through `refresh_live` as the app's job runs it."""

from __future__ import annotations

import asyncio
import gc
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.gc_settings import young_collections_paused
from app.rules.model import Policy
from app.services.baselines import BaselineCache, refresh_live
from app.services.policy.admin import replace_policy
from app.services.policy.cache import PolicyCache
from tests.services.stored_history import request_in, result_in
from tests.services.test_adaptive_limits import ADAPTIVE
from tests.store.test_baselines import NOW

NEW = 3000  # verifications since the last refresh, each a success of a new number


async def test_a_refresh_runs_no_collection_and_collections_resume_after_it(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await replace_policy(
            conn, policy=Policy.model_validate({"rules": [ADAPTIVE]}), now=NOW, actor="test"
        )
    policies, cache = PolicyCache(default_action="allow", timezone="UTC"), BaselineCache()
    await refresh_live(engine, policies, cache, NOW)
    async with engine.begin() as conn:
        for i in range(NEW):
            ident, at = str(uuid.uuid4()), NOW + timedelta(milliseconds=i)
            await request_in(conn, ident, f"+4670{i:07d}", at=at)
            await result_in(conn, ident, "SUCCESSFUL", at=at + timedelta(seconds=1))
    collections: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults: the refresh crosses them many times
    gc.callbacks.append(seen)
    try:
        gc.collect()  # counts from zero: none due before the refresh starts
        assert gc.isenabled() and collections == [2]
        await refresh_live(engine, policies, cache, NOW + timedelta(seconds=30))
        during = len(collections) - 1  # an int: no allocation the collector counts
        assert gc.isenabled()  # resumed
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*before)
    assert during <= 1  # the one due once it ends, if any (thousands of objects: dozens before)
    fresh = BaselineCache()  # everything read in full: the refresh applied all of it
    await refresh_live(engine, policies, fresh, NOW + timedelta(seconds=30))
    assert cache.snapshot() == fresh.snapshot() != {}


async def test_a_pause_ends_at_its_limit_if_the_job_is_stuck() -> None:
    """A refresh held by a database that stopped answering leaves the collector on again
    after `limit` (the loop's timers fire in deadline order: no race with the sleep)."""
    assert gc.isenabled()
    with young_collections_paused(limit=0.01):
        assert not gc.isenabled()
        await asyncio.sleep(0.05)
        assert gc.isenabled()
    assert gc.isenabled()
