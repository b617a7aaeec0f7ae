"""A request event is never answered with a 5xx: failures and missed deadlines fall back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from httpx import ASGITransport, AsyncClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.settings import Settings
from app.sinch import samples
from app.store.counter_model import BucketClock
from app.store.models import VerificationRow
from tests.conftest import make_settings
from tests.support import SinchSender

NUMBER = "+46701234567"


async def _stored(engine: AsyncEngine, ident: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        stmt = select(VerificationRow.__table__).where(VerificationRow.id == ident)
        return dict((await conn.execute(stmt)).mappings().one())


async def test_internal_failure_answers_and_records_the_fallback(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        # Counting now fails; renamed, not dropped, so the table comes back with its
        # indexes and the triggers that keep counter_hours (the session's later tests need them).
        await conn.execute(text("ALTER TABLE counters RENAME TO counters_away"))
    event = samples.request_event(number=NUMBER)
    try:
        response = await sinch.post(event)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE counters_away RENAME TO counters"))
    assert response.status_code == 200
    assert response.json() == {"action": "deny"}
    await sinch.client.app.state.runtime.intake.drain()  # type: ignore[attr-defined]
    stored = await _stored(engine, event["id"])
    assert (stored["action"], stored["reason"], stored["decided_by"]) == (
        "deny",
        "fallback",
        "fallback",
    )
    assert stored["answer"] == {"action": "deny"}
    again = await sinch.post(event)
    assert again.json() == {"action": "deny"}, "a redelivery gets what Sinch was told"


async def test_missed_deadline_answers_the_fallback_in_time(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url, tmp_path, decision_deadline_ms=300, fallback_action="allow"
    )
    async with _guard(settings) as (runtime, sinch):
        blocker, release = await _block_counters(runtime, database_url)
        try:
            event = samples.request_event(number=NUMBER)
            started = time.perf_counter()
            response = await sinch.post(event)
            elapsed = time.perf_counter() - started
        finally:
            await release()
        assert response.status_code == 200
        assert response.json()["action"] == "allow"
        assert elapsed < 0.3 + 0.5, f"answered after {elapsed:.3f}s"
        await runtime.intake.drain()
        stored = await _stored(runtime.engine, event["id"])
        assert (stored["reason"], stored["decided_by"]) == ("fallback", "fallback")
        assert stored["answer"]["action"] == "allow"
        del blocker


@asynccontextmanager
async def _guard(settings: Settings) -> AsyncIterator[tuple[Any, SinchSender]]:
    """The app serving, its policy cache warm: its runtime and a signed sender."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://guard.test") as http:
            sinch = SinchSender(http, path=settings.callback_path)
            await sinch.post(samples.request_event(number=NUMBER))
            yield app.state.runtime, sinch


async def _block_counters(runtime: Any, database_url: str) -> tuple[Any, Any]:
    """Hold a lock the next decision must wait for: a row lock (PostgreSQL) or the write lock."""
    if database_url.startswith("sqlite"):
        import sqlite3

        path = database_url.split("///", 1)[1]
        raw = sqlite3.connect(path, timeout=5)
        raw.execute("BEGIN IMMEDIATE")

        async def release_sqlite() -> None:
            raw.rollback()
            raw.close()
            await asyncio.sleep(0.5)

        return raw, release_sqlite
    bucket = BucketClock(60).bucket(datetime.now(UTC))
    conn = await runtime.engine.connect()
    tx = await conn.begin()
    await conn.execute(
        text(
            "INSERT INTO counters (key, bucket, attempts, allowed, pending, spend_micros, "
            "allowed_spend_micros, pending_spend_micros, successes) "
            "VALUES (:k, :b, 0, 0, 0, 0, 0, 0, 0) ON CONFLICT (key, bucket) "
            "DO UPDATE SET attempts = counters.attempts"
        ),
        {"k": f"number:{NUMBER}", "b": bucket},
    )

    async def release_pg() -> None:
        await tx.rollback()
        await conn.close()
        await asyncio.sleep(0.5)

    return conn, release_pg


async def test_a_decision_late_before_it_gets_a_connection_does_no_work(
    database_url: str, tmp_path: Path
) -> None:
    """Requests that queued past the deadline for a counting connection are answered with the
    fallback and, once a connection is free, do not count or decide at all: that work
    would only hold the connection from requests still in time (the overload loop)."""
    settings = make_settings(database_url, tmp_path, decision_deadline_ms=300, database_pool_size=2)
    async with _guard(settings) as (runtime, sinch):
        observed: list[str] = []  # attempts counted (on PostgreSQL, in batches: lanes.py)
        live, through = runtime.aggregator.observe_live, runtime.aggregator.observe_through

        async def spy_live(conn: Any, policies: Any, facts: Any, **options: Any) -> Any:
            counted = await live(conn, policies, facts, **options)
            observed.append(str(facts.number))
            return counted

        async def spy_through(count: Any, policies: Any, facts: Any) -> Any:
            counted = await through(count, policies, facts)
            observed.append(str(facts.number))
            return counted

        runtime.aggregator.observe_live = spy_live
        runtime.aggregator.observe_through = spy_through
        events = [samples.request_event(number=f"+4670123450{i}") for i in range(5)]
        held = [] if runtime.held is None else list(runtime.held._idle)
        async with AsyncExitStack() as stack:  # every counting connection taken
            for _ in range(1 if runtime.held is None else settings.database_pool_size):
                await stack.enter_async_context(runtime.counting())
            answers = await asyncio.gather(*(sinch.post(e) for e in events))
        await runtime.intake.drain()
        assert [a.json() for a in answers] == [{"action": "deny"}] * 5
        assert observed == [], "late decisions counted after the connections came back"
        if runtime.held is not None:  # and the held connections were kept, not replaced
            assert sorted(map(id, runtime.held._idle)) == sorted(map(id, held))
        for event in events:
            stored = await _stored(runtime.engine, event["id"])
            assert (stored["reason"], stored["decided_by"]) == ("fallback", "fallback")
        after = await sinch.post(samples.request_event(number="+46701234599"))
        assert after.json()["action"] == "allow"
        assert observed == ["+46701234599"]
