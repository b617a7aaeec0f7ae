"""Fixtures the store tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.base import create_engine
from tests.conftest import _truncate


@pytest.fixture
async def conn(postgres_database: str) -> AsyncIterator[AsyncConnection]:
    """A connection of an autocommit engine (as the request path's counting statements
    use) on the session's PostgreSQL database, its tables emptied first. A test module
    that needs another kind of connection defines its own `conn`."""
    await _truncate(postgres_database)
    engine = create_engine(postgres_database, autocommit=True)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()
