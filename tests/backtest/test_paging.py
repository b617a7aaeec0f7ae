"""The stored history a backtest replays, read page by page (through asyncpg on PostgreSQL,
through SQLAlchemy elsewhere): every attempt in [start, until) once, in (requested_at, id)
order, ties on the time broken by id across a page boundary, with the columns as stored."""

from __future__ import annotations

from datetime import UTC, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import backtests as store
from tests.backtest.helpers import at, attempt, store_rows


async def test_pages_cover_the_window_in_order(store_engine: AsyncEngine) -> None:
    same = at(5)
    rows = [
        attempt(at(-1)),  # before start
        attempt(at(1), status="SUCCESSFUL", price_amount=0.25, price_currency="eur"),
        *[attempt(same, number=f"+4670123456{i}") for i in range(5)],  # one time, 5 ids
        attempt(at(9), country="NG", calling_code=234, number="+2348031234567"),
        attempt(at(20)),  # at `until`: outside
    ]
    await store_rows(store_engine, rows)
    got, after = [], None
    while True:
        async with store_engine.connect() as conn:
            page = await store.attempts_page(conn, start=at(0), until=at(20), after=after, limit=2)
        got += page
        if len(page) < 2:
            break
        after = (page[-1].requested_at, page[-1].id)
    inside = sorted((r for r in rows if at(0) <= r["requested_at"] < at(20)), key=_order)
    assert [a.id for a in got] == [r["id"] for r in inside]
    first = got[0]
    assert first.requested_at == at(1) and first.requested_at.tzinfo is not None
    assert first.requested_at.utcoffset() == timedelta(0)
    assert (first.status, first.price_amount, first.price_currency) == ("SUCCESSFUL", 0.25, "eur")
    assert first.result_at is not None and first.result_at.astimezone(UTC) == at(1, 40)
    nigerian = got[-1]
    assert (nigerian.country, nigerian.calling_code) == ("NG", 234)


def _order(row: dict[str, object]) -> tuple[object, object]:
    return row["requested_at"], row["id"]
