"""Adaptive limits' baselines refreshed incrementally equal a full read, on SQLite and
PostgreSQL: over a random history with late results (hours and days late, PENDING before
and after SUCCESSFUL, redelivered, before their request), hour boundaries, requests ahead
of the refresh's clock, a clock that goes back, gaps longer than a window and a policy
change. And an incremental refresh reads the changes since the last one, not the history."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.aggregates import BaselineSpec, HistorySpec
from app.rules.engine import CompiledPolicy
from app.services.baselines import BaselineCache
from app.store import changes
from app.store.baselines import BaselineQuery, first_attempts, last, same_hour, verified_counts
from tests.services.stored_history import store_request, store_result

NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
BLOCKS = [("+4670123", 4), ("+4670124", 4), ("+44791112", 4), ("+4915123", 5)]
RANGE_14D = BaselineSpec("range", -3, 14 * 86_400, None)
COUNTRY_2H = BaselineSpec("country", None, 7_200, None)
COUNTRY_SAME_HOUR = BaselineSpec("country", None, None, 3)
NUMBER_1H = BaselineSpec("number", None, 3_600, None)
COUNTRY_1H_HISTORY = HistorySpec("country", None, 3_600)


@dataclass(frozen=True)
class Policy:
    """What the refresh reads of a compiled policy."""

    baselines: dict[BaselineSpec, float]
    histories: frozenset[HistorySpec]


FIRST = Policy({RANGE_14D: 1, COUNTRY_2H: 0, COUNTRY_SAME_HOUR: 0}, frozenset())
CHANGED = Policy(
    {RANGE_14D: 1, NUMBER_1H: 0, COUNTRY_SAME_HOUR: 0}, frozenset({COUNTRY_1H_HISTORY})
)


class History:
    """Random verifications stored as the intake stores them, with results to come."""

    def __init__(self, engine: AsyncEngine, rng: random.Random) -> None:
        self.engine, self.rng = engine, rng
        self.later: list[tuple[int, str, str]] = []  # (step due, id, status)
        self.unrequested: list[tuple[str, str, datetime]] = []  # results stored first

    def number(self) -> str:
        prefix, digits = self.rng.choice(BLOCKS)
        return prefix + "".join(self.rng.choice("0123456789") for _ in range(digits))

    async def attempt(self, at: datetime, step: int) -> None:
        ident, number, roll = str(uuid.uuid4()), self.number(), self.rng.random()
        if roll < 0.1:  # the result first, its request stored a step later (replayed)
            await store_result(self.engine, ident, "SUCCESSFUL", at=at + timedelta(seconds=3))
            self.unrequested.append((ident, number, at))
            return
        await store_request(self.engine, ident, number, at=at)
        if roll < 0.55:
            await store_result(self.engine, ident, "SUCCESSFUL", at=at + timedelta(seconds=2))
            if self.rng.random() < 0.2:  # redelivered, or a late PENDING after it
                status = self.rng.choice(["SUCCESSFUL", "PENDING"])
                self.later.append((step + self.rng.randint(0, 4), ident, status))
        elif roll < 0.7:  # PENDING first, SUCCESSFUL steps (hours, days) later
            await store_result(self.engine, ident, "PENDING", at=at + timedelta(seconds=2))
            self.later.append((step + self.rng.randint(1, 12), ident, "SUCCESSFUL"))
        elif roll < 0.8:
            await store_result(self.engine, ident, "FAIL", at=at + timedelta(seconds=2))
        elif roll < 0.9:  # no result yet: a success much later
            self.later.append((step + self.rng.randint(1, 30), ident, "SUCCESSFUL"))

    async def due(self, step: int, at: datetime) -> None:
        for ident, number, requested in self.unrequested:
            await store_request(self.engine, ident, number, at=requested, stored_at=at)
        self.unrequested = []
        for item in [item for item in self.later if item[0] <= step]:
            self.later.remove(item)
            await store_result(self.engine, item[1], item[2], at=at)


async def _expected(conn: AsyncConnection, policy: Policy, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec, above in policy.baselines.items():
        query = BaselineQuery(spec.key, spec.digits, spans(spec, now), above)
        out[spec.id] = await verified_counts(conn, query)
    return out


def spans(spec: BaselineSpec, now: datetime) -> list[tuple[datetime, datetime]]:
    """What a full read counts as of `now`."""
    if spec.same_hour_days is not None:
        return same_hour(spec.same_hour_days, now)
    return last(timedelta(seconds=spec.window_seconds or 0), now)


def _steps(rng: random.Random) -> Iterator[timedelta]:
    """Refresh intervals: mostly short, some across hours and beyond a window, one back."""
    for step in range(48):
        if step == 17:
            yield -timedelta(seconds=10)
        elif step == 30:
            yield 2 * HOUR + timedelta(minutes=1)  # longer than COUNTRY_2H's window
        else:
            yield rng.choice([timedelta(seconds=7), timedelta(seconds=30), timedelta(minutes=5)])
            if rng.random() < 0.2:
                yield rng.choice([timedelta(minutes=47), HOUR, timedelta(days=1)])


@pytest.mark.parametrize("seed", [1, 2])
async def test_incremental_refreshes_equal_a_full_read(
    engine: AsyncEngine, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claims and verifications read a few at a time: a verification's request and result
    # claims fall in different chunks (and the ids present past a mark, where some are not).
    monkeypatch.setattr(changes, "CLAIM_CHUNK", 7)
    monkeypatch.setattr(changes, "SPAN_CHUNK", 5)
    monkeypatch.setattr(changes, "CHUNK", 3)
    rng = random.Random(seed)
    history = History(engine, rng)
    for _ in range(150):  # 15 days before the first refresh, some results still to come
        await history.attempt(NOW - rng.uniform(0, 15) * DAY, 0)
    for days in (1, 2, 3):  # on the hours the same-hour baseline reads, and their edges
        for edge in (NOW - days * DAY, NOW - days * DAY - timedelta(minutes=30)):
            await history.attempt(edge.replace(minute=0, second=0), 0)
    cache, now, policy = BaselineCache(), NOW, FIRST
    for step, interval in enumerate(_steps(rng), start=1):
        if step == 25:
            policy = CHANGED
        for _ in range(rng.randint(0, 8)):  # some ahead of the refresh's clock
            await history.attempt(now + rng.uniform(-0.5, 1.0) * min(interval, HOUR), step)
        if rng.random() < 0.3:  # exactly at the old edge of the 2-hour window
            await history.attempt(now + interval - COUNTRY_2H_WINDOW, step)
        await history.due(step, now)
        now += interval
        async with engine.connect() as conn:
            await cache.refresh(conn, cast(CompiledPolicy, policy), now)
            expected = await _expected(conn, policy, now)
            firsts = await first_attempts(conn, "country", None, now - HOUR, now)
        got = cache.snapshot()
        assert {k: got[k] for k in expected} == expected, f"step {step} at {now}"
        if policy.histories:  # a key's first attempt, never older than the window's start
            kept = got[COUNTRY_1H_HISTORY.id]
            assert set(kept) == set(firsts), f"step {step} at {now}"
            start = (now - HOUR).timestamp()
            assert all(start <= kept[k] <= firsts[k].timestamp() for k in kept)


COUNTRY_2H_WINDOW = timedelta(seconds=7_200)


async def test_an_incremental_refresh_reads_the_recent_changes_only(engine: AsyncEngine) -> None:
    """14 days of successes are read once; the refresh 30 s later reads only what the new
    claims name and the 30 s that left the window (statement parameters, and on PostgreSQL
    the rows it fetched from `verifications`), not the history."""
    rng = random.Random(7)
    history = History(engine, rng)
    for _ in range(400):
        await history.attempt(NOW - rng.uniform(0, 14) * DAY, 0)
    cache, policy = BaselineCache(), cast(CompiledPolicy, Policy({RANGE_14D: 1}, frozenset()))
    async with engine.connect() as conn:
        await cache.refresh(conn, policy, NOW)
    for i in range(5):
        await history.attempt(NOW + timedelta(seconds=i), 1)
    later = NOW + timedelta(seconds=30)
    seen: list[dict[str, Any]] = []

    def capture(_c: Any, _cur: Any, _stmt: str, parameters: Any, *_: Any) -> None:
        seen.extend(parameters if isinstance(parameters, list) else [parameters])

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # 400 rows are one page: read by index anyway
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
        before = await _rows_fetched(conn)
        await cache.refresh(conn, policy, later)
        after = await _rows_fetched(conn)
    event.remove(engine.sync_engine, "before_cursor_execute", capture)
    async with engine.connect() as conn:
        expected = await _expected(conn, Policy({RANGE_14D: 1}, frozenset()), later)
    assert cache.snapshot()[RANGE_14D.id] == expected[RANGE_14D.id]
    for parameters in seen:  # each statement's request times span the 30 s at most
        moments = [m for m in map(_moment, _values(parameters)) if m is not None]
        assert not moments or max(moments) - min(moments) <= timedelta(seconds=30), moments
    if before is not None and after is not None:  # PostgreSQL: the 5 new (of 405) and theirs
        assert after - before <= 20, after - before


def _values(parameters: Any) -> list[Any]:
    if isinstance(parameters, dict):
        return list(parameters.values())
    if isinstance(parameters, (tuple, list)):
        return list(parameters)
    return []


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == " ":
        try:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            return None
    return None


async def _rows_fetched(conn: AsyncConnection) -> int | None:
    """Rows read from `verifications` by this backend, not yet flushed to the cumulative
    statistics (so: in this transaction, plus a constant from earlier ones)."""
    if conn.dialect.name != "postgresql":
        return None
    stmt = text(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
        "FROM pg_stat_xact_user_tables WHERE relname = 'verifications'"
    )
    return int((await conn.execute(stmt)).scalar_one())
