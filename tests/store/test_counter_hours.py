"""Every path that counts on PostgreSQL keeps each hour row equal to its minutes' sum.

The hour rows ("<key>@h") stand in for whole hours of minutes in long windows; whatever
writes a minute row (the counting statement, the settle inside the store, a redelivery
taken back, a successful result) must write its hour row alike.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sinch import samples
from app.store.buckets import VALUE_COLUMNS
from tests.support import SinchSender

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

SUMS = ", ".join(f"sum({c})" for c in VALUE_COLUMNS)


async def test_hour_rows_are_the_sums_of_their_minutes(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    ids = []
    for n in range(4):  # the starter policy holds and settles the range (allowed-only)
        event = samples.request_event(number=f"+4670123456{n}", price=0.05)
        ids.append((event["id"], f"+4670123456{n}"))
        assert (await sinch.post(event)).status_code == 200
    assert (await sinch.post(event)).status_code == 200  # a redelivery: counted, taken back
    ident, number = ids[0]
    result = samples.result_event(verification_id=ident, number=number)
    assert (await sinch.post(result)).status_code == 200  # a success, credited

    async with engine.connect() as conn:
        minutes = (
            await conn.execute(
                text(
                    f"SELECT key || '@h', bucket - bucket % 3600, {SUMS} FROM counters "
                    "WHERE key NOT LIKE '%@h' GROUP BY 1, 2 ORDER BY 1, 2"
                )
            )
        ).all()
        hours = (
            await conn.execute(
                text(
                    f"SELECT key, bucket, {', '.join(VALUE_COLUMNS)} FROM counters "
                    "WHERE key LIKE '%@h' ORDER BY 1, 2"
                )
            )
        ).all()
    assert minutes and [tuple(r) for r in hours] == [tuple(r) for r in minutes]
    by_key = {r[0]: dict(zip(VALUE_COLUMNS, r[2:], strict=True)) for r in hours}
    range_row = by_key["range8:+46701234@h"]
    assert (range_row["allowed"], range_row["pending"]) == (4, 0), "settled in the store"
    assert by_key["country:SE@h"]["successes"] == 1
    assert by_key["country:SE@h"]["attempts"] == 4, "the redelivery was taken back"


async def test_counts_and_stores_in_a_burst_never_deadlock(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    """Counting statements and stores write minute and hour rows of the same keys at once;
    they lock them in one order (a deadlock was answered with the fallback)."""
    for _ in range(3):
        events = [
            samples.request_event(number=f"+467012345{n % 7:02d}", price=0.05) for n in range(60)
        ]
        responses = await asyncio.gather(*(sinch.post(e) for e in events))
        assert {r.status_code for r in responses} == {200}
    async with engine.connect() as conn:
        reasons = Counter(
            dict(
                (await conn.execute(text("SELECT reason, count(*) FROM verifications GROUP BY 1")))
                .tuples()
                .all()
            )
        )
    assert sum(reasons.values()) == 180 and "fallback" not in reasons, reasons
