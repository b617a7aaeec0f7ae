"""Fixtures of the service tests: the real app through its ASGI interface, with counters
in the database or in Redis; an engine on the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.store.base import create_engine
from tests.conftest import make_settings
from tests.support import SinchSender


@pytest.fixture(params=["sql", pytest.param("redis", marks=pytest.mark.redis)])
def counters(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sql":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def guard(
    database_url: str, tmp_path: Path, counters: str | None
) -> AsyncIterator[SinchSender]:
    settings = make_settings(database_url, tmp_path, redis_url=counters)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield SinchSender(http, path=settings.callback_path)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()
