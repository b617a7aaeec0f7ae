"""The console's reads hold no request event back, on SQLite and PostgreSQL: the overview
recomputed in the background (app/web/overview_cache.py) and the decisions feed, which a
console polls every 2 s.

Under attack an overview reads the last hour's attempts, about a second; once it is slow it
is kept and recomputed in the background every `fresh_for` while a console is open. On
SQLite that recomputation ran on the app's one connection, the request path's: every
request event meanwhile waited for it. It now reads through the runtime's reader
(store/base.py `create_reader`), as the console's warm-up does. The feed held the writer
for the whole request (its read, its page's render): it now logs the read in a short
transaction first, then reads on the reader.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.main import create_app
from app.services.audit.queries import AuditContext
from app.services.tokens import Principal
from app.settings import Settings
from app.sinch import samples
from app.store import audit as store_audit
from app.store import stats_rollup as rollup
from app.web import overview_cache
from app.web.overview import Overview
from tests.audit.rows import insert_rows, row
from tests.conftest import make_settings
from tests.support import SinchSender
from tests.web.conftest import BOOTSTRAP, sign_in

FRESH = 0.2
BURST = 16


async def test_request_events_are_decided_while_the_overview_recomputes(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        bootstrap_token=BOOTSTRAP,
        console_overview_slow_ms=0,  # every overview kept, recomputed in the background
        console_overview_fresh_seconds=FRESH,
    )
    computing, release = asyncio.Event(), asyncio.Event()
    compute, calls = overview_cache.overview, []

    async def slow_overview(conn: AsyncConnection, **kwargs: Any) -> Overview:
        calls.append(kwargs["period"])
        if len(calls) == 1:  # the first page's own computation: as it was
            return await compute(conn, **kwargs)
        await conn.execute(text("SELECT count(*) FROM verifications"))  # its snapshot taken
        computing.set()
        await release.wait()  # a long read, as an hour of an attack's attempts
        return await compute(conn, **kwargs)

    monkeypatch.setattr(overview_cache, "overview", slow_overview)
    async with _console_and_sinch(settings) as (console, sender):
        assert (await console.get("/")).status_code == 200  # computed, kept
        await asyncio.sleep(FRESH + 0.05)
        assert (await console.get("/")).status_code == 200  # kept; recomputation started
        await asyncio.wait_for(computing.wait(), 5)
        try:
            assert await _burst(sender, first=2_345_600) == ["allow"] * BURST
            assert not release.is_set()  # all decided while it still read
        finally:
            release.set()


async def test_an_overview_read_beside_the_writer_is_exact(
    database_url: str, tmp_path: Path
) -> None:
    """The background computation rolls the settled hours on the writer, then reads on the
    reader (`roll=False`): the same overview as one computed on the writer, also after a
    late write into a settled hour (a dirty hour, rolled again)."""
    app = create_app(make_settings(database_url, tmp_path))
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        engines = overview_cache.Engines(runtime.engine, runtime.reader)
        cache = overview_cache.OverviewCache()
        at = datetime.now(UTC) - timedelta(hours=3)  # a settled hour
        await insert_rows(runtime.engine, [_row(at, "+46701234567", "allow")])
        for late in (False, True):
            if late:  # a row of that hour written late: the hour marked dirty
                await insert_rows(runtime.engine, [_row(at, "+2348031234567", "deny")])
                async with runtime.engine.begin() as conn:
                    await rollup.mark_late(conn, at)
            await cache.refresh(engines, "24h")
            kept = cache._kept["24h"].overview
            ctx = dataclasses.replace(_CTX, at=kept.until)
            async with runtime.engine.begin() as conn:
                direct = await overview_cache.overview(conn, ctx=ctx, period="24h")
            assert kept.metrics == direct.metrics
            assert kept.countries == direct.countries
            attempts = next(m for m in kept.metrics if m.label == "Attempts")
            assert attempts.value == (2 if late else 1)


_CTX = AuditContext(
    Principal(token_id=None, name="test", role="auditor"),
    "GET",
    "/",
    {},
    datetime.now(UTC),
    reveal=True,
    logged=False,
)


def _row(at: datetime, number: str, action: str) -> dict[str, object]:
    return row(requested_at=at, created_at=at, number=number, action=action)


async def test_request_events_are_decided_while_the_feed_reads(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(database_url, tmp_path, bootstrap_token=BOOTSTRAP)
    reading, release = asyncio.Event(), asyncio.Event()
    search = store_audit.search

    async def slow_search(conn: AsyncConnection, *args: Any, **kwargs: Any) -> Any:
        await conn.execute(text("SELECT count(*) FROM verifications"))
        reading.set()
        await release.wait()  # a long read
        return await search(conn, *args, **kwargs)

    monkeypatch.setattr(store_audit, "search", slow_search)
    async with _console_and_sinch(settings) as (console, sender):
        feed = asyncio.create_task(console.get("/decisions/rows"))
        await asyncio.wait_for(reading.wait(), 5)
        try:
            assert await _burst(sender, first=3_456_700) == ["allow"] * BURST
            assert not feed.done()  # all decided while it still read
        finally:
            release.set()
        assert (await feed).status_code == 200


@asynccontextmanager
async def _console_and_sinch(settings: Settings) -> AsyncIterator[tuple[AsyncClient, SinchSender]]:
    """The app, a console signed in, and Sinch's side."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            AsyncClient(transport=transport, base_url="http://verifyguard.test") as console,
            AsyncClient(transport=transport, base_url="http://verifyguard.test") as sinch,
        ):
            await sign_in(console, BOOTSTRAP)
            yield console, SinchSender(sinch, path=settings.callback_path)


async def _burst(sender: SinchSender, *, first: int) -> list[str]:
    """BURST request events to distinct ordinary mobiles at once: each one's action."""
    numbers = [f"+4673{n:07d}" for n in range(first, first + BURST)]
    replies = await asyncio.gather(*(sender.post(samples.request_event(number=n)) for n in numbers))
    return [reply.json()["action"] for reply in replies]
