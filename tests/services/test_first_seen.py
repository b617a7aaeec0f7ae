"""The first attempt per key for `min_history`, refreshed incrementally, on SQLite and
PostgreSQL: after the first read only the attempts stored since the previous refresh are
read (the inbox claims since), and the answer is the one a scan of the whole window gives."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.aggregates import HistorySpec
from app.rules.engine import CompiledPolicy
from app.services.baselines import BaselineCache
from app.store.baselines import first_attempts
from tests.services.stored_history import store_request, store_result
from tests.services.test_verified_counts import Policy
from tests.store.test_baselines import NOW

DAY = timedelta(days=1)
SE, GG = "country:SE", "country:GG"
LATE = timedelta(minutes=20)
HISTORY = HistorySpec("country", None, 86_400)
POLICY = cast(CompiledPolicy, Policy({}, frozenset({HISTORY})))


async def _store(engine: AsyncEngine, number: str, *, at: datetime, status: str | None) -> None:
    ident = str(uuid.uuid4())
    await store_request(engine, ident, number, at=at)
    if status is not None:
        await store_result(engine, ident, status, at=at + timedelta(seconds=1))


async def _refresh(engine: AsyncEngine, seen: BaselineCache, at: timedelta) -> dict[str, float]:
    async with engine.connect() as conn:
        await seen.refresh(conn, POLICY, NOW + at)
    return dict(seen.snapshot()[HISTORY.id])


async def _scanned(engine: AsyncEngine, at: timedelta) -> dict[str, float]:
    async with engine.connect() as conn:
        found = await first_attempts(conn, "country", None, NOW + at - DAY, NOW + at)
    return {key: moment.timestamp() for key, moment in found.items()}


async def test_incremental_first_attempts_match_a_scan_of_the_window(engine: AsyncEngine) -> None:
    seen = BaselineCache()
    await _store(engine, "+46701234567", at=NOW - timedelta(hours=23), status="SUCCESSFUL")
    assert await _refresh(engine, seen, timedelta()) == await _scanned(engine, timedelta())
    # A new key, and a row stored late (requested 20 minutes before the previous refresh:
    # a fallback answer replayed from the spool).
    await _store(engine, "+447911123456", at=NOW + timedelta(seconds=20), status=None)
    await _store(engine, "+46701234568", at=NOW - LATE, status="FAIL")
    after = timedelta(seconds=30)
    assert await _refresh(engine, seen, after) == await _scanned(engine, after)
    # An hour on, SE's first attempt has left the window, its next one (20 minutes before
    # NOW) has not: seen throughout, it is reported as old as the window, which is old
    # enough for any min_history the next one is old enough for.
    later = timedelta(hours=1, seconds=30)
    firsts, scanned = await _refresh(engine, seen, later), await _scanned(engine, later)
    assert firsts[GG] == scanned[GG] and set(firsts) == set(scanned) == {SE, GG}
    assert firsts[SE] == (NOW + later - DAY).timestamp() < scanned[SE]
    assert scanned[SE] == (NOW - LATE).timestamp()


async def test_a_key_silent_for_a_whole_window_is_new_again(engine: AsyncEngine) -> None:
    seen = BaselineCache()
    await _store(engine, "+447911123456", at=NOW, status=None)
    assert set(await _refresh(engine, seen, timedelta(seconds=1))) == {GG}
    for hours in range(1, 25):  # refreshed on, nothing new
        firsts = await _refresh(engine, seen, timedelta(hours=hours, seconds=1))
    assert firsts == {}
    await _store(engine, "+447911123457", at=NOW + DAY + timedelta(minutes=1), status=None)
    firsts = await _refresh(engine, seen, DAY + timedelta(minutes=1, seconds=1))
    assert firsts == {GG: (NOW + DAY + timedelta(minutes=1)).timestamp()}


async def test_a_key_seen_throughout_reports_the_window_start(engine: AsyncEngine) -> None:
    """Kept across refreshes: its earliest attempt, never older than the window."""
    seen = BaselineCache()
    await _store(engine, "+447911123456", at=NOW, status=None)
    await _refresh(engine, seen, timedelta(seconds=1))
    await _store(engine, "+447911123457", at=NOW + timedelta(hours=20), status=None)
    await _refresh(engine, seen, timedelta(hours=20, seconds=1))
    at = DAY + timedelta(hours=1)
    assert await _refresh(engine, seen, at) == {GG: (NOW + at - DAY).timestamp()}
