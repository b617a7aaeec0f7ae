"""The first attempt per key for `min_history`, refreshed incrementally, on SQLite and
PostgreSQL: after the first read only the attempts since the previous refresh are read, and
the answer is the one a scan of the whole window gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.aggregates import HistorySpec
from app.services.first_seen import OVERLAP, FirstSeen
from app.store.base import create_engine
from app.store.baselines import first_attempts
from tests.store.test_baselines import NOW, _store

DAY = timedelta(days=1)
SE, GG = "country:SE", "country:GG"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def _refresh(engine: AsyncEngine, seen: FirstSeen, at: timedelta) -> dict[str, float]:
    async with engine.connect() as conn:
        await seen.refresh(conn, NOW + at)
        return seen.firsts(NOW + at)


async def _scanned(engine: AsyncEngine, at: timedelta) -> dict[str, float]:
    async with engine.connect() as conn:
        found = await first_attempts(conn, "country", None, NOW + at - DAY, NOW + at)
    return {key: moment.timestamp() for key, moment in found.items()}


async def test_incremental_first_attempts_match_a_scan_of_the_window(engine: AsyncEngine) -> None:
    seen = FirstSeen(HistorySpec("country", None, 86_400))
    await _store(engine, "+46701234567", at=NOW - timedelta(hours=23), status="SUCCESSFUL")
    assert await _refresh(engine, seen, timedelta()) == await _scanned(engine, timedelta())
    # A new key, and a row stored late (requested before the previous refresh).
    await _store(engine, "+447911123456", at=NOW + timedelta(seconds=20), status=None)
    await _store(engine, "+46701234568", at=NOW - OVERLAP / 2, status="FAIL")
    after = timedelta(seconds=30)
    assert await _refresh(engine, seen, after) == await _scanned(engine, after)
    assert seen.read_until == NOW + after
    # An hour on, SE's first attempt has left the window, its next one (2.5 minutes before
    # NOW) has not: seen throughout, it is reported as old as the window, which is old
    # enough for any min_history the next one is old enough for.
    later = timedelta(hours=1, seconds=30)
    firsts, scanned = await _refresh(engine, seen, later), await _scanned(engine, later)
    assert firsts[GG] == scanned[GG] and set(firsts) == set(scanned) == {SE, GG}
    assert firsts[SE] == (NOW + later - DAY).timestamp() < scanned[SE]
    assert scanned[SE] == (NOW - OVERLAP / 2).timestamp()


async def test_a_key_silent_for_a_whole_window_is_new_again(engine: AsyncEngine) -> None:
    seen = FirstSeen(HistorySpec("country", None, 86_400))
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
    seen = FirstSeen(HistorySpec("country", None, 86_400))
    await _store(engine, "+447911123456", at=NOW, status=None)
    await _refresh(engine, seen, timedelta(seconds=1))
    await _store(engine, "+447911123457", at=NOW + timedelta(hours=20), status=None)
    await _refresh(engine, seen, timedelta(hours=20, seconds=1))
    at = DAY + timedelta(hours=1)
    assert await _refresh(engine, seen, at) == {GG: (NOW + at - DAY).timestamp()}
