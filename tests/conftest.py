"""Test fixtures: each HTTP test runs on SQLite and, when reachable, on PostgreSQL.

VERIFYGUARD_TEST_POSTGRES_URL / VERIFYGUARD_TEST_REDIS_URL point the suite at real servers
(.ci/run sets them); without them those tests are skipped, and the summary says so.
VERIFYGUARD_TEST_REQUIRE_SERVICES=1 turns an unreachable server into a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.settings import Settings
from app.store.base import create_engine
from app.store.migrate import upgrade
from app.store.models import Base
from tests.support import TEST_APP_KEY, TEST_APP_SECRET, SinchSender

POSTGRES_URL = os.environ.get("VERIFYGUARD_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("VERIFYGUARD_TEST_REDIS_URL")
REQUIRE = os.environ.get("VERIFYGUARD_TEST_REQUIRE_SERVICES") == "1"


def _missing(what: str) -> None:
    if REQUIRE:
        pytest.fail(f"{what} is required in CI but not configured/reachable")
    pytest.skip(f"{what} not configured (set VERIFYGUARD_TEST_{what.upper()}_URL)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    if not POSTGRES_URL:
        _missing("postgres")
    assert POSTGRES_URL is not None
    name = f"vg_test_{uuid.uuid4().hex[:10]}"
    admin_url = POSTGRES_URL

    async def run(sql: str) -> None:
        admin = create_engine(admin_url)
        try:
            async with admin.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await admin.dispose()

    try:
        asyncio.run(run(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _missing(f"postgres ({exc!r})")
    base = POSTGRES_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "verifyguard.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate(url))
    return url


async def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name != "policy_state")
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await conn.execute(
            text("UPDATE policy_state SET version = 0, default_action = NULL WHERE id = 1")
        )
    await engine.dispose()


@pytest.fixture
def redis_url() -> str:
    if not REDIS_URL:
        _missing("redis")
    assert REDIS_URL is not None
    return REDIS_URL


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "sinch_apps": {TEST_APP_KEY: TEST_APP_SECRET},
        "dev_app_file": tmp_path / "dev-app.json",
        "spool_dir": tmp_path / "spool",
        "log_json": True,
        "log_level": "WARNING",
        # Generous: a loaded CI machine must not turn decisions into fallbacks. Tests of the
        # deadline itself set their own.
        "decision_deadline_ms": 5000,
        # Redis outlives a test run: each test counts under keys of its own.
        "redis_prefix": f"vgtest:{uuid.uuid4().hex[:12]}:",
        # No background reads racing a test's own (tests/web/test_warm_up.py turns it on).
        "console_warm_up": False,
        # Overviews always computed (a loaded machine would keep slow ones: overview_cache.py).
        "console_overview_slow_ms": 1e9,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.fixture
def sinch(client: AsyncClient, settings: Settings) -> SinchSender:
    return SinchSender(client, path=settings.callback_path)


@pytest.fixture
async def engine(client: AsyncClient) -> AsyncEngine:
    """The app's own engine, to look at what it stored."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime.engine  # type: ignore[no-any-return]
