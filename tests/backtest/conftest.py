"""Backtest fixtures: the admin API's (a bootstrap token, stored admin and auditor tokens) and
an engine on the test database for the tests that run the service in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.base import create_engine
from tests.admin.conftest import admin, auditor, settings

__all__ = ["admin", "auditor", "settings"]


@pytest.fixture
async def store_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()
