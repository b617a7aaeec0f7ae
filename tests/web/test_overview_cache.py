"""A slow overview is kept and served from memory (app/web/overview_cache.py): every read
still logged, read by auditors too, and recomputed in the background once it is stale."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.settings import Settings
from app.store.models import AuditLogRow
from tests.audit.rows import insert_rows, row
from tests.conftest import make_settings
from tests.web.conftest import BOOTSTRAP, sign_in, stored_token

FRESH = 3.0


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Every overview counts as slow: each is kept, FRESH seconds before a recomputation.
    return make_settings(
        database_url,
        tmp_path,
        bootstrap_token=BOOTSTRAP,
        console_overview_slow_ms=0,
        console_overview_fresh_seconds=FRESH,
    )


async def _logged(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(AuditLogRow))).scalar_one())


def _denied(country: str, number: str) -> dict[str, object]:
    at = datetime.now(UTC) - timedelta(minutes=5)
    return row(
        requested_at=at,
        created_at=at,
        country=country,
        number=number,
        action="deny",
        reason="number_velocity",
        decided_by="enforce",
        rule_name="velocity",
    )


async def test_a_slow_overview_is_kept_logged_masked_and_refreshed(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine: AsyncEngine = app.state.runtime.engine
        await insert_rows(engine, [_denied("SE", "+46701234233")])
        _, auditor = await stored_token(engine, "audrey", "auditor")
        transport = ASGITransport(app=app)
        async with (
            AsyncClient(transport=transport, base_url="http://c.test") as admin,
            AsyncClient(transport=transport, base_url="http://c.test") as reader,
        ):
            await sign_in(admin, BOOTSTRAP)
            await sign_in(reader, auditor)
            first = await admin.get("/")
            assert first.status_code == 200
            assert "+467012" in first.text  # the top denied range, to an admin
            await insert_rows(engine, [_denied("NG", "+2348031234567")])
            kept = await admin.get("/")
            assert ">NG<" not in kept.text  # served from memory: the new row not yet in it
            read_only = await reader.get("/")  # the kept overview, for an auditor
            assert read_only.status_code == 200
            assert ">NG<" not in read_only.text
            assert "/countries/block" not in read_only.text
            assert await _logged(engine) == 3  # every read logged, kept or not
            await asyncio.sleep(FRESH + 0.2)
            stale = await admin.get("/")  # served as kept, and starts a recomputation
            assert ">NG<" not in stale.text
            for _ in range(600):
                if not app.state.console.overview._running:
                    break
                await asyncio.sleep(0.05)
            fresh = await admin.get("/")
            assert ">NG<" in fresh.text
            assert await _logged(engine) == 5  # the background one is not logged
