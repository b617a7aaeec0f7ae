"""Hour totals: kept in step with the buckets by every writer, backfilled by the upgrade,
and what bounds a window read once days of history exist.

`counter_hours` holds per key and hour what windows read of the key's buckets that start
in that hour, each measure's sum (migration 0009's triggers); SQL window reads take whole
hours from it and only their edges from buckets (store/pg_windows.py,
store/sqlite_windows.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sinch import samples
from app.store.base import create_engine
from app.store.counter_model import (
    READS,
    VALUE_COLUMNS,
    Attempt,
    BucketClock,
    CounterDeltas,
    Measure,
    Reads,
    WindowQuery,
    succeeded,
)
from app.store.counters import SqlCounters
from app.store.migrate import downgrade, upgrade
from app.store.tables import counters
from app.store.thread_connection import ThreadConnection, drive
from tests.support import SinchSender

CLOCK = BucketClock(60)
NOW = datetime(2026, 11, 23, 14, 37, 12, tzinfo=UTC)
KEYS = ["country:SE", "global", "range-3:+467012", "number:+46701234567"]
MEASURES: tuple[Measure, ...] = ("attempts", "spend", "allowed", "allowed_spend", "successes")
WINDOWS = (60, 600, 3600, 5400, 7200, 86_400, 2 * 86_400 + 1800)


def _history(rng: random.Random, hours: int) -> list[dict[str, Any]]:
    """Bucket rows of `hours` hours before NOW (and NOW's own), most minutes of each key."""
    current = CLOCK.bucket(NOW)
    rows = []
    for key in KEYS:
        for m in range(hours * 60 + 1):
            if rng.random() < 0.8:
                values = {c: rng.randint(0, 9) for c in VALUE_COLUMNS}
                rows.append({"key": key, "bucket": current - 60 * m, **values})
    return rows


def _expected(rows: list[dict[str, Any]], query: WindowQuery, now: datetime) -> int:
    """What the window sums, bucket by bucket (the model's definition)."""
    since, current = CLOCK.oldest(now, query.window_seconds), CLOCK.bucket(now)
    return sum(
        row[c]
        for row in rows
        if row["key"] == query.key and since <= row["bucket"] <= current
        for c in READS[query.measure]
    )


async def _hour_rows(engine: AsyncEngine) -> tuple[dict[tuple[str, int], tuple[int, ...]], ...]:
    """The hour table, and the hour sums of the buckets, to compare: per key and hour what
    windows read of it (each measure's sum; hours where all are 0 left out)."""
    names = ", ".join(VALUE_COLUMNS)
    sums = ", ".join(f"sum({c})" for c in VALUE_COLUMNS)
    async with engine.connect() as conn:
        kept = await conn.execute(text(f"SELECT key, hour, {names} FROM counter_hours"))
        summed = await conn.execute(
            text(
                f"SELECT key, bucket - bucket % 3600, {sums} FROM counters "
                "GROUP BY key, bucket - bucket % 3600"
            )
        )
        return _measures(kept), _measures(summed)


def _measures(rows: Any) -> dict[tuple[str, int], tuple[int, ...]]:
    out = {}
    for row in rows:
        values = dict(zip(VALUE_COLUMNS, (int(v) for v in row[2:]), strict=True))
        measures = tuple(sum(values[c] for c in READS[m]) for m in MEASURES)
        if any(measures):
            out[row[0], int(row[1])] = measures
    return out


async def _read(engine: AsyncEngine, queries: list[WindowQuery], now: datetime) -> dict[Any, int]:
    async with engine.begin() as conn:
        return await SqlCounters(60).read(conn, Reads(queries, now))


def test_upgrade_backfills_hours_from_the_buckets(database_url: str) -> None:
    """Buckets counted before 0007 get their hours from the upgrade; every later writer
    (counts, settles, redeliveries, successes) keeps them equal to their buckets' sums,
    and windows over days read what the buckets sum."""
    rng = random.Random(7)
    downgrade(database_url, "0006")
    rows = _history(rng, 60)
    asyncio.run(_insert(database_url, rows))
    upgrade(database_url)
    asyncio.run(_after_upgrade(database_url, rows, rng))


async def _insert(url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(counters), rows)
    finally:
        await engine.dispose()


async def _after_upgrade(url: str, rows: list[dict[str, Any]], rng: random.Random) -> None:
    engine = create_engine(url)
    try:
        kept, summed = await _hour_rows(engine)
        assert len(kept) > 4 * 60 and kept == summed
        queries = [WindowQuery(k, w, m) for k in KEYS for w in WINDOWS for m in MEASURES]
        read = await _read(engine, queries, NOW)
        assert read == {q: _expected(rows, q, NOW) for q in queries}
        store = SqlCounters(60)
        for i in range(40):
            moment = NOW + timedelta(seconds=37 * i)
            attempt = Attempt.of(set(KEYS[: 1 + i % 4]), {"global"}, clock=CLOCK, now=moment,
                                 spend=1000 * i)  # fmt: skip
            async with engine.begin() as conn:
                await store.observe(conn, attempt.counted(), Reads(queries[:5], moment))
                settle = attempt.settled(allowed=i % 3 != 0)
                await store.apply(conn, [settle] if settle else attempt.forgotten())
                back = NOW - timedelta(hours=rng.randint(0, 50), minutes=rng.randint(0, 59))
                await store.apply(conn, [succeeded({"country:SE"}, clock=CLOCK, requested_at=back)])
        kept, summed = await _hour_rows(engine)
        assert kept == summed
    finally:
        await engine.dispose()


async def test_retention_drops_the_hours_it_empties(database_url: str) -> None:
    from app.store.retention import delete_counter_hours, delete_counters

    engine = create_engine(database_url)
    current = CLOCK.bucket(NOW)
    cut = current - 3 * 3600 - 1200  # 20 minutes into an hour: that hour stays whole
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(counters), _history(random.Random(3), 6))
            await delete_counters(conn, cut)
            await delete_counter_hours(conn, cut)
        kept, _ = await _hour_rows(engine)
        first_kept = cut - cut % 3600
        assert min(hour for _, hour in kept) == first_kept
        assert all(hour >= first_kept for _, hour in kept)
    finally:
        await engine.dispose()


def _scan_rows(plan: dict[str, Any], found: dict[str, int]) -> None:
    relation = plan.get("Relation Name")
    if relation in ("counters", "counter_hours") and "Scan" in plan["Node Type"]:
        found[relation] = found.get(relation, 0) + plan["Actual Rows"] * plan["Actual Loops"]
    for child in plan.get("Plans", []):
        _scan_rows(child, found)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_reads_a_day_window_from_hours_and_edges(database_url: str) -> None:
    """After two days of minutes, a hot key's 24 h window reads at most its two edge hours'
    buckets and 24 hour rows (bucket by bucket it read 1,440 rows)."""
    engine = create_engine(database_url)
    captured: list[tuple[str, tuple[Any, ...]]] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda record: captured.append((record.query, record.args))
        )

    event.listen(engine.sync_engine, "connect", on_connect)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(counters), _history(random.Random(5), 50))
            await conn.execute(text("ANALYZE counters"))
            await conn.execute(text("ANALYZE counter_hours"))
        window = WindowQuery("global", 86_400, "attempts")
        await _read(engine, [window], NOW)
        query, args = next((q, a) for q, a in captured if "FROM counters" in q)
        async with engine.connect() as conn:
            apg: Any = (await conn.get_raw_connection()).driver_connection
            found = await apg.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
        rows: dict[str, int] = {}
        plan = json.loads(found) if isinstance(found, str) else found
        _scan_rows(plan[0]["Plan"], rows)
        assert rows.get("counters", 0) <= 2 * 60 + 1, rows
        assert rows.get("counter_hours", 0) <= 24, rows
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_day_window_costs_what_a_short_history_costs(database_url: str) -> None:
    """SQLite's work (VM instructions, deterministic) to read a 24 h window after two days
    of minutes stays within 3x what it is after three hours (bucket by bucket, ~8x: the
    window then holds 1,440 buckets against 180)."""
    path = database_url.split(":///", 1)[1]
    queries = [WindowQuery(k, 86_400, m) for k in KEYS for m in ("attempts", "allowed")]
    assert _vm_steps(path, queries, 48) <= 3 * _vm_steps(path, queries, 3)


def _vm_steps(path: str, queries: list[WindowQuery], hours: int) -> int:
    """SQLite VM instructions (in tens) of reading `queries` after `hours` of history."""
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM counters")
        db.execute("DELETE FROM counter_hours")
        marks = ", ".join(f":{c}" for c in ["key", "bucket", *VALUE_COLUMNS])
        db.executemany(
            f"INSERT INTO counters (key, bucket, {', '.join(VALUE_COLUMNS)}) VALUES ({marks})",
            _history(random.Random(9), hours),
        )
    engine = create_sync_engine(f"sqlite:///{path}")
    counted = [0]

    def step() -> int:
        counted[0] += 1
        return 0

    try:
        with engine.connect() as sync:
            conn: Any = ThreadConnection(sync)
            drive(SqlCounters(60).read(conn, Reads(queries, NOW)))  # plans it
            dbapi: Any = sync.connection.dbapi_connection
            dbapi.set_progress_handler(step, 10)
            drive(SqlCounters(60).read(conn, Reads(queries, NOW)))
            dbapi.set_progress_handler(None, 0)
    finally:
        engine.dispose()
    return counted[0]


async def test_the_request_path_keeps_hours_with_its_buckets(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    """Through the app (group commit's counts, the decisions' store statement that
    carries their settles, results crediting successes): hours equal their buckets."""
    numbers = [f"+4670123456{n}" for n in range(6)] + ["+46701234567"] * 4
    for number in numbers:
        event_ = samples.request_event(number=number, price=0.05)
        response = await sinch.post(event_)
        assert response.status_code == 200
        if number.endswith("2") or number.endswith("7"):
            result = samples.result_event(verification_id=event_["id"], number=number)
            assert (await sinch.post(result)).status_code == 200
    kept, summed = await _hour_rows(engine)
    assert kept and kept == summed
    assert any(values[MEASURES.index("successes")] for values in kept.values())
    assert any(values[MEASURES.index("allowed")] for values in kept.values())


async def test_an_allowed_settle_leaves_its_hours_alone(database_url: str) -> None:
    """Hours hold each measure's sum (pending counts as allowed), so a change moving pending
    into allowed (an allowed settle by a version that held attempts pending) changes no
    hour, and no hour row is written for it; the model's allowed settle writes nothing at
    all; a denied one takes its hold off the hours."""
    engine = create_engine(database_url)
    store, keys = SqlCounters(60), {"country:SE", "range-3:+467012"}
    allowed = Attempt.of(keys, keys, clock=CLOCK, now=NOW, spend=5000)
    denied = Attempt.of(keys, keys, clock=CLOCK, now=NOW + timedelta(seconds=61), spend=7000)
    try:
        async with engine.begin() as conn:
            await store.apply(conn, [*allowed.counted(), *denied.counted()])
        before = await _stored_hours(engine)
        assert {k: v[1:] for k, v in before.items()} == {
            k: (2, 2, 0, 12000, 12000, 0, 0) for k in keys
        }
        assert allowed.settled(allowed=True) is None
        moved = {"pending": -1, "pending_spend_micros": -5000}
        moved |= {"allowed": 1, "allowed_spend_micros": 5000}
        async with engine.begin() as conn:
            await store.apply(conn, [CounterDeltas(allowed.held, allowed.bucket, moved)])
        assert await _stored_hours(engine) == before  # not even rewritten (PostgreSQL: xmin)
        async with engine.begin() as conn:
            await store.apply(conn, [denied.settled(allowed=False)])  # type: ignore[list-item]
        after = await _stored_hours(engine)
        assert {k: v[1:] for k, v in after.items()} == {
            k: (2, 1, 0, 12000, 5000, 0, 0) for k in keys
        }
        kept, summed = await _hour_rows(engine)
        assert kept == summed
    finally:
        await engine.dispose()


async def _stored_hours(engine: AsyncEngine) -> dict[str, tuple[Any, ...]]:
    """Per key its hour row as stored: the row's version first (PostgreSQL's xmin, changed
    by any write of it; SQLite: none), then its columns."""
    version = "xmin::text" if engine.dialect.name == "postgresql" else "NULL"
    names = ", ".join(VALUE_COLUMNS)
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT key, {version}, {names} FROM counter_hours"))
        return {r[0]: (r[1], *(int(v) for v in r[2:])) for r in rows}
