"""The console's warm-up after start-up: templates compiled and the overview's and feed's
reads run once in the background, the rollup brought up to date, nothing logged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.store.base import create_engine
from app.store.models import AuditLogRow, StatsHourStateRow
from tests.audit.rows import insert_rows, row
from tests.conftest import make_settings
from tests.web.conftest import BOOTSTRAP, sign_in


async def _count(engine: AsyncEngine, model: type) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


async def test_warm_up_compiles_templates_and_rolls_up_without_logging(
    database_url: str, tmp_path: Path
) -> None:
    seeding = create_engine(database_url)
    hours_ago = datetime.now(UTC) - timedelta(hours=5)
    try:
        await insert_rows(seeding, [row(requested_at=hours_ago, created_at=hours_ago)])
    finally:
        await seeding.dispose()
    settings = make_settings(
        database_url,
        tmp_path,
        bootstrap_token=BOOTSTRAP,
        console_warm_up=True,
        stats_rollup_interval_seconds=0,  # the background roller would roll the hours too
    )
    app = create_app(settings)
    console = app.state.console
    async with app.router.lifespan_context(app):
        engine = app.state.runtime.engine
        assert await _count(engine, StatsHourStateRow) == 0  # nothing rolled before it
        await asyncio.wait_for(console.warmed.wait(), timeout=60)
        env = console.templates.env
        cached = {key[1] for key in env.cache}  # (loader, name)
        assert set(env.list_templates(extensions=["html"])) <= cached
        assert await _count(engine, StatsHourStateRow) > 0  # the overview's reads ran
        assert await _count(engine, AuditLogRow) == 0  # and were not logged
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://console.test") as http:
            await sign_in(http, BOOTSTRAP)
            page = await http.get("/")
            assert page.status_code == 200
            assert await _count(engine, AuditLogRow) == 1  # a person's read is


async def test_warm_up_off(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, console_warm_up=False))
    console = app.state.console
    async with app.router.lifespan_context(app):
        assert console.warmed.is_set()
        assert not console.templates.env.cache
