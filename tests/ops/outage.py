"""Helpers of the outage tests: VerifyGuard behind a FaultProxy, and what reached PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.store.base import create_engine
from app.store.models import CallbackRow, CounterRow, VerificationRow
from tests.conftest import make_settings
from tests.support import SinchSender

DEADLINE_MS = 400
MARGIN = 0.25  # CI noise on top of the deadline; the property, not a benchmark


@asynccontextmanager
async def guard(
    url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, SinchSender]]:
    values: dict[str, Any] = {
        "decision_deadline_ms": DEADLINE_MS,
        "outage_probe_interval_ms": 100,
        "database_connect_timeout_seconds": 1.0,
        "database_pool_size": 8,
    }
    settings = make_settings(url, tmp_path, **(values | overrides))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://guard.test") as http:
            yield app, SinchSender(http, path=settings.callback_path)


async def opened(app: FastAPI, within: float = 15.0) -> None:
    """Wait until the breaker is open (the database found slow or away)."""
    outage = app.state.runtime.outage
    try:
        async with asyncio.timeout(within):
            while not outage.down:  # noqa: ASYNC110 (the breaker has no event to wait on)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"the breaker never opened within {within} s") from None


async def settled(app: FastAPI, within: float = 20.0) -> None:
    """Wait until the database is back and the spool replayed."""
    runtime = app.state.runtime
    outage = runtime.outage
    async with asyncio.timeout(within):
        while True:
            await runtime.intake.drain()
            if not outage.down and outage.spool.depth == 0:
                return
            await asyncio.sleep(0.1)


@asynccontextmanager
async def direct(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine straight to PostgreSQL, around the proxy."""
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def stored_requests(engine: AsyncEngine, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = list(ids)
    cols = VerificationRow.__table__.c
    stmt = select(cols.id, cols.answer, cols.degraded, cols.reason, cols.status, cols.decided_by)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt.where(cols.id.in_(wanted)))).mappings()
        return {row["id"]: dict(row) for row in rows}


async def claims(engine: AsyncEngine, prefix: str) -> dict[str, int]:
    """Inbox rows per verification id whose dedupe key starts with `prefix`."""
    cols = CallbackRow.__table__.c
    stmt = (
        select(cols.verification_id, func.count())
        .where(cols.dedupe_key.like(f"{prefix}%"))
        .group_by(cols.verification_id)
    )
    async with engine.connect() as conn:
        return {vid: int(n) for vid, n in (await conn.execute(stmt)).all()}


async def counted_numbers(engine: AsyncEngine) -> int:
    cols = CounterRow.__table__.c
    stmt = select(func.coalesce(func.sum(cols.attempts), 0)).where(cols.key.like("number:%"))
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())
