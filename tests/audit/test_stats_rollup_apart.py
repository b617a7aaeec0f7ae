"""Rolling hours apart from the writer (app/services/audit/rollup.py `refresh_apart`): the
same rollup as rolling on the writer, and exact when a late write lands between an hour's
read and its store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.audit import rollup as service
from app.sinch import samples
from app.store import audit_stats as audit_stats_store
from app.store import stats_rollup, stats_rollup_apart
from app.store.models import VerificationMatchRow, VerificationRow
from app.store.stats_rollup import HOUR, TABLES
from app.store.tables import rollup_hours
from tests.audit.rows import BASE, audit_log, insert_rows, row
from tests.audit.test_stats_rollup import _random_matches, _random_rows
from tests.support import SinchSender
from tests.support_beside import asked_beside_requests, park

SINCE, UNTIL = BASE - timedelta(days=1), BASE + timedelta(days=2)
WINDOW = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
Dump = dict[str, list[tuple[Any, ...]]]


def _reader(client: AsyncClient) -> AsyncEngine:
    return client.app.state.runtime.reader  # type: ignore[attr-defined,no-any-return]


async def _dump(engine: AsyncEngine) -> Dump:
    """Every rollup table's rows, comparable across the two ways of rolling them."""
    out: Dump = {}
    async with engine.connect() as conn:
        for table in TABLES:
            columns = [c for c in table.c if c.name != "id"]  # ids differ, by insertion order
            rows = (await conn.execute(select(*columns))).all()
            out[table.name] = sorted((tuple(_plain(v) for v in r) for r in rows), key=repr)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, float):
        return round(value, 6)
    return value


async def _rolled_on_the_writer(engine: AsyncEngine) -> Dump:
    """What `stats_rollup.refresh` makes of the same rows, from nothing."""
    async with engine.begin() as conn:
        for table in (*TABLES, rollup_hours):
            await conn.execute(delete(table))
        await stats_rollup.refresh(conn, SINCE, UNTIL)
    return await _dump(engine)


async def _dirty(engine: AsyncEngine) -> list[datetime]:
    async with engine.connect() as conn:
        return await stats_rollup.dirty_hours(conn, SINCE, UNTIL)


async def _late_result(conn: AsyncConnection, hour: datetime, status: str) -> None:
    """A very late result for one verification of `hour`, as the intake writes it."""
    row_id = (
        await conn.execute(
            select(VerificationRow.id)
            .where(VerificationRow.requested_at >= hour)
            .where(VerificationRow.requested_at < hour + timedelta(hours=1))
            .order_by(VerificationRow.id)
            .limit(1)
        )
    ).scalar_one()
    values = {"status": status}
    await conn.execute(update(VerificationRow).where(VerificationRow.id == row_id).values(values))
    await stats_rollup.mark_late(conn, hour + timedelta(minutes=1))


async def _rows(engine: AsyncEngine, seed: int) -> None:
    rows = _random_rows(300, seed=seed)
    await insert_rows(engine, rows)
    async with engine.begin() as conn:
        await conn.execute(insert(VerificationMatchRow), _random_matches(rows, seed=seed))


@pytest.mark.parametrize("slice_rows", [stats_rollup_apart.SLICE_ROWS, 3])
async def test_rolled_apart_equals_rolled_on_the_writer(
    client: AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, slice_rows: int
) -> None:
    """Hours read whole, several together (the usual size), or each in slices of 3 rows
    added up (an attack's hour): the same rows as rolling on the writer."""
    monkeypatch.setattr(stats_rollup_apart, "SLICE_ROWS", slice_rows)
    await _rows(engine, seed=11)
    reader = _reader(client)

    rolled = await service.refresh_apart(engine, reader, SINCE, UNTIL)
    assert rolled == 72  # every hour of the three days: none was rolled
    apart = await _dump(engine)
    assert apart["stats_hourly"], "the hours were rolled"
    assert await service.refresh_apart(engine, reader, SINCE, UNTIL) == 0
    assert apart == await _rolled_on_the_writer(engine)

    # Dirty hours rolled again apart: the late results' hours hold their new statuses.
    async with engine.begin() as conn:
        for hours in (3, 30, 31):
            await _late_result(conn, BASE + timedelta(hours=hours), "SUCCESSFUL")
    assert len(await _dirty(engine)) == 3
    assert await service.refresh_apart(engine, reader, SINCE, UNTIL) == 3
    assert await _dirty(engine) == []
    again = await _dump(engine)
    assert again != apart
    assert again == await _rolled_on_the_writer(engine)


@pytest.mark.parametrize("overtaken", [1, 10])
async def test_a_late_write_during_an_hours_read_is_rolled_too(
    client: AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, overtaken: int
) -> None:
    """A late write lands in one of two dirty hours after their aggregates were read,
    `overtaken` times: that hour is read again (1) or, overtaken every time, rolled on the
    writer (10); never stored stale with its dirty mark taken. Its neighbour, read and
    stored with it, is stored the first time."""
    await _rows(engine, seed=12)
    reader = _reader(client)
    assert await service.refresh_apart(engine, reader, SINCE, UNTIL) == 72
    hour, neighbour = BASE + timedelta(hours=5), BASE + timedelta(hours=6)
    async with engine.begin() as conn:
        await _late_result(conn, hour, "FAIL")
        await _late_result(conn, neighbour, "FAIL")
    read_piece = stats_rollup_apart.read_piece
    writes = iter(["SUCCESSFUL", "FAIL"] * overtaken)
    late = 0
    stored: list[list[datetime]] = []
    store_hours = stats_rollup_apart.store_hours

    async def overtaken_read(
        conn: AsyncConnection, reads: Any, since: datetime, until: datetime
    ) -> None:
        nonlocal late
        await read_piece(conn, reads, since, until)
        if since <= hour < until and late < overtaken:
            late += 1  # after the hour was read
            async with engine.begin() as writer:
                await _late_result(writer, hour, next(writes))

    async def seen_store(conn: AsyncConnection, reads: Sequence[Any]) -> int:
        stored.append([read.hour for read in reads])
        return await store_hours(conn, reads)

    monkeypatch.setattr(stats_rollup_apart, "read_piece", overtaken_read)
    monkeypatch.setattr(stats_rollup_apart, "store_hours", seen_store)
    assert await service.refresh_apart(engine, reader, SINCE, UNTIL) == 2
    assert late == min(overtaken, service.PASSES)
    assert stored[0] == [hour, neighbour]  # read and stored together
    assert await _dirty(engine) == []
    monkeypatch.undo()
    assert await _dump(engine) == await _rolled_on_the_writer(engine)


async def test_hours_rolled_meanwhile_are_not_stored_twice(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    """Two refreshes read the same never-rolled hours; the second store finds them claimed."""
    await _rows(engine, seed=13)
    hours = [BASE + timedelta(hours=2), BASE + timedelta(hours=3)]
    reader = _reader(client)

    async def read() -> list[stats_rollup_apart.RolledHour]:
        async with reader.connect() as conn:
            reads = await stats_rollup_apart.read_states(conn, hours)
            by_hour = {one.hour: one for one in reads}
            await stats_rollup_apart.read_piece(conn, by_hour, hours[0], hours[1] + HOUR)
        return reads

    first, second = await read(), await read()
    assert [one.version for one in first] == [None, None]
    async with engine.begin() as conn:
        assert await stats_rollup_apart.store_hours(conn, first) == 2
    async with engine.begin() as conn:
        assert await stats_rollup_apart.store_hours(conn, second) == 0
    async with engine.connect() as conn:
        table = TABLES[0]
        stored = await conn.execute(select(func.sum(table.c.attempts)))
        attempts = stored.scalar_one()
    in_hours = sum(
        1 for r in _random_rows(300, seed=13) if hours[0] <= r["requested_at"] < hours[1] + HOUR
    )
    assert attempts == in_hours


async def test_each_late_result_moves_its_hours_version(
    client: AsyncClient, engine: AsyncEngine, sinch: SinchSender
) -> None:
    """Through the intake (on PostgreSQL its asyncpg batch): what `store_hours` compares."""
    numbers = ["+46701234233", "+46701234234"]
    old = [
        row(requested_at=BASE + timedelta(minutes=5 + n), number=n_) for n, n_ in enumerate(numbers)
    ]
    await insert_rows(engine, old)
    assert await service.refresh_apart(engine, _reader(client), SINCE, UNTIL) > 0
    for verification in old:
        result = samples.result_event(
            verification_id=verification["id"], number=verification["number"]
        )
        assert (await sinch.post(result)).status_code == 200
    async with engine.connect() as conn:
        state = (
            await conn.execute(
                select(rollup_hours.c.dirty, rollup_hours.c.version).where(
                    rollup_hours.c.hour == BASE
                )
            )
        ).one()
    assert (state.dirty, state.version) == (True, 2)


async def test_the_stats_api_rolls_apart_from_the_writer(
    client: AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    sinch: SinchSender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GET /audit/stats over a settled hour never rolled: request events are decided while
    the hour is read (on SQLite the writer is their one connection), then the stats count it."""
    rows = _random_rows(300, seed=14)
    await insert_rows(engine, rows)
    parked = park(monkeypatch, stats_rollup_apart, "read_piece")
    response = await asked_beside_requests(
        client, admin, sinch, parked, "/audit/stats", WINDOW, first=3_234_500
    )
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["attempts"] == len(rows)


def test_pieces_join_small_hours_and_slice_big_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_rollup_apart, "SLICE_ROWS", 100)
    h = [BASE + HOUR * n for n in range(6)]
    counts = {h[0]: 40, h[1]: 50, h[2]: 30, h[3]: 250, h[5]: 10}  # h[4] empty
    assert stats_rollup_apart.pieces(counts) == [
        (h[0], h[2]),  # 90 rows together
        (h[2], h[3]),  # 30 more would pass 100
        (h[3], h[3] + HOUR / 3),  # 250 rows: three equal slices
        (h[3] + HOUR / 3, h[3] + 2 * HOUR / 3),
        (h[3] + 2 * HOUR / 3, h[4]),
        (h[5], h[5] + HOUR),  # not joined across the empty hour
    ]


async def test_the_stats_api_reads_beside_the_writer(
    client: AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    sinch: SinchSender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GET /audit/stats reads its rows (under attack, a million of the last hour) while
    request events are decided beside it, and logs the query once, after it answered; a
    refused query is logged once, as refused."""
    await insert_rows(engine, _random_rows(50, seed=15))
    parked = park(monkeypatch, audit_stats_store, "grouped")
    response = await asked_beside_requests(
        client, admin, sinch, parked, "/audit/stats", WINDOW, first=4_234_500
    )
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["attempts"] == 50

    backwards = {"since": UNTIL.isoformat(), "until": SINCE.isoformat()}
    refused = await client.get("/audit/stats", params=backwards, headers=admin)
    assert refused.status_code == 400
    logged = [(e["path"], e["status"]) for e in await audit_log(engine)]
    assert logged == [("/audit/stats", 200), ("/audit/stats", 400)]
