"""tests/engines.py: an engine renewed while a connection is out leaves nothing to the
garbage collector (every warning fails a test, unraisable ones included)."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import text

from app.store.base import create_engine
from tests.engines import renew_connections


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_connection_out_while_renewing_is_closed_when_given_back(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as busy:  # a background job's, mid-query
            await busy.execute(text("SELECT 1"))
            await renew_connections(engine)
        async with engine.connect() as fresh:
            await fresh.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    del busy, fresh
    gc.collect()
