"""Verified baselines read from the stored verifications, on SQLite and PostgreSQL: the SQL
key of each verification is the key the counters use, and only successes in the spans and
above the threshold are returned."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.aggregates import CounterKey
from app.rules.facts import derive_facts
from app.store.base import create_engine
from app.store.baselines import (
    BaselineQuery,
    first_attempts,
    last,
    same_hour,
    verified_counts,
)
from app.store.tables import verifications

NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
NUMBERS = ["+46701234567", "+447911123456", "+4915123456789", "+6777123", "+12015550123"]
KEYS = [
    CounterKey("number"),
    CounterKey("range", 8),
    CounterKey("range", -3),
    CounterKey("range", -6),
    CounterKey("country"),
    CounterKey("calling_code"),
    CounterKey("reference"),
    CounterKey("application"),
    CounterKey("global"),
]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def _store(
    engine: AsyncEngine, number: str, *, at: datetime, status: str, **more: object
) -> None:
    facts = derive_facts(
        method="sms",
        endpoint=number,
        price_amount=None,
        price_currency=None,
        rate_amount=None,
        rate_currency=None,
        reference=None,
        custom=None,
        application=None,
        now=at,
    )
    row = {
        "id": str(uuid.uuid4()),
        "created_at": at,
        "requested_at": at,
        "number": facts.number,
        "country": facts.country,
        "calling_code": facts.calling_code,
        "status": status,
        "app_key": "App-Key",
        "reference": "signup",
        "method": "sms",
    } | more
    async with engine.begin() as conn:
        await conn.execute(insert(verifications).values(**row))


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
async def test_sql_keys_are_the_counter_keys(engine: AsyncEngine, key: CounterKey) -> None:
    for number in NUMBERS:
        await _store(engine, number, at=NOW - timedelta(hours=1), status="SUCCESSFUL")
    query = BaselineQuery(key.key, key.digits, last(timedelta(days=14), NOW), 0)
    async with engine.connect() as conn:
        got = await verified_counts(conn, query)
    expected: dict[str, int] = {}
    for number in NUMBERS:
        facts = derive_facts(
            method="sms",
            endpoint=number,
            price_amount=None,
            price_currency=None,
            rate_amount=None,
            rate_currency=None,
            reference="signup",
            custom=None,
            application="App-Key",
            now=NOW,
        )
        value = key.value(facts)
        if value is not None:
            expected[value] = expected.get(value, 0) + 1
    assert got == expected


async def test_only_successes_in_the_window_above_the_threshold(engine: AsyncEngine) -> None:
    block = "+4670123"
    for i in range(5):
        await _store(engine, f"{block}{i:04d}", at=NOW - timedelta(days=13), status="SUCCESSFUL")
    await _store(engine, f"{block}0009", at=NOW - timedelta(days=15), status="SUCCESSFUL")
    await _store(engine, f"{block}0010", at=NOW, status="FAIL")
    await _store(engine, "+46709990000", at=NOW, status="SUCCESSFUL")  # one: at the threshold
    query = BaselineQuery("range", 8, last(timedelta(days=14), NOW), 1)
    async with engine.connect() as conn:
        assert await verified_counts(conn, query) == {"range8:+46701230": 5}


async def test_same_hour_of_the_last_days(engine: AsyncEngine) -> None:
    number = "+46701234567"
    for days in (1, 2, 7):
        await _store(engine, number, at=NOW - timedelta(days=days, minutes=10), status="SUCCESSFUL")
    await _store(engine, number, at=NOW - timedelta(days=8), status="SUCCESSFUL")  # too old
    await _store(engine, number, at=NOW - timedelta(days=1, hours=1), status="SUCCESSFUL")
    await _store(engine, number, at=NOW - timedelta(minutes=5), status="SUCCESSFUL")  # today
    query = BaselineQuery("number", None, same_hour(7, NOW), 0)
    async with engine.connect() as conn:
        assert await verified_counts(conn, query) == {f"number:{number}": 3}


async def test_first_attempts_per_key_in_the_span_denied_ones_included(
    engine: AsyncEngine,
) -> None:
    """`min_history` reads each key's first attempt, whatever became of it."""
    since = NOW - timedelta(days=1)
    await _store(engine, "+46701234567", at=since - timedelta(seconds=1), status="SUCCESSFUL")
    await _store(engine, "+46701234568", at=NOW - timedelta(hours=3), status="FAIL")
    await _store(engine, "+46701234569", at=NOW - timedelta(hours=2), status="SUCCESSFUL")
    await _store(engine, "+447911123456", at=NOW - timedelta(seconds=30), status=None)
    await _store(engine, "+447911123457", at=NOW, status=None, action="deny")
    await _store(engine, "+4915123456789", at=NOW + timedelta(seconds=1), status=None)
    async with engine.connect() as conn:
        countries = await first_attempts(conn, "country", None, since, NOW)
        blocks = await first_attempts(conn, "range", -3, since, NOW)
    assert countries == {
        "country:SE": NOW - timedelta(hours=3),
        "country:GG": NOW - timedelta(seconds=30),  # +447911: Guernsey
    }
    assert blocks == {
        "range-3:+46701234": NOW - timedelta(hours=3),
        "range-3:+447911123": NOW - timedelta(seconds=30),
    }
