"""What startup prepares for the first burst: the collector set for serving (restored after),
and on PostgreSQL the counting pool already open."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from app.gc_settings import SERVER_THRESHOLDS
from app.main import create_app
from tests.conftest import make_settings


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_serving_freezes_startup_and_raises_thresholds_then_restores(
    database_url: str, tmp_path: Path
) -> None:
    before = gc.get_threshold()
    assert before != SERVER_THRESHOLDS
    app = create_app(make_settings(database_url, tmp_path))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == SERVER_THRESHOLDS
        assert gc.get_freeze_count() > 10_000  # modules, metadata, the compiled policy
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_counting_pool_is_open_before_the_first_request(
    database_url: str, tmp_path: Path
) -> None:
    """A burst right after a restart finds its connections made: none waits for one to be
    opened (which made the first answers after a restart miss the deadline)."""
    app = create_app(make_settings(database_url, tmp_path, database_pool_size=7))
    async with app.router.lifespan_context(app):
        pool = app.state.runtime.counter_engine.pool
        # All open, and held by the counting set (out of the engine's pool for good).
        assert (pool.checkedin(), pool.checkedout()) == (0, 7)
    assert pool.checkedout() == 0  # given back at shutdown
