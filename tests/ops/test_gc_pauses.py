"""Each garbage collection's pause on /metrics, by generation: what an operator reads to see
whether the collector stops the event loop (python_gc_* count collections, not their length)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient

from app.main import create_app
from tests.conftest import make_settings
from tests.ops.scrape import sample

PAUSES = "verifyguard_gc_pause_seconds"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_show_each_collections_pause_by_generation(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(database_url, tmp_path))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://guard.test") as http:
            before = (await http.get("/metrics")).text
            gc.collect(1)
            gc.collect(2)
            after = (await http.get("/metrics")).text

    for generation in ("1", "2"):
        counted = sample(after, f"{PAUSES}_count", generation=generation)
        assert counted >= sample(before, f"{PAUSES}_count", generation=generation) + 1
        # Every collection falls in a bucket: the +Inf bucket is the count.
        assert sample(after, f"{PAUSES}_bucket", generation=generation, le="+Inf") == counted
        assert sample(after, f"{PAUSES}_sum", generation=generation) > sample(
            before, f"{PAUSES}_sum", generation=generation
        )
