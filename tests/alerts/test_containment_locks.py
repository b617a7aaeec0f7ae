"""Two processes changing one containment at once (`serve --workers 2` takes admin requests
on either worker) change it one after the other: neither change is lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from app.services.alerts import containments
from app.services.tokens import Principal
from app.store import alerts as store
from app.store.base import create_engine

NOW = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
BY = Principal(token_id=None, name="oncall", role="admin")


async def test_two_extensions_at_once_both_count(database_url: str) -> None:
    """Each engine is a process of its own. On SQLite each read the containment before
    either wrote, and the second extension overwrote the first's: an hour lost."""
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        async with engines[0].begin() as conn:
            containment_id = await store.add_containment(
                conn, key="country", value="XX", alert=None, status="active",
                duration_seconds=600, created_at=NOW, created_by="test",
                expires_at=NOW + timedelta(seconds=600), updated_at=NOW,
            )  # fmt: skip

        async def extend(engine_index: int) -> None:
            async with engines[engine_index].begin() as conn:
                await containments.extend(
                    conn, containment_id=containment_id, seconds=3600, by=BY, now=NOW,
                    default="allow",
                )  # fmt: skip

        await asyncio.gather(extend(0), extend(1))
        async with engines[0].connect() as conn:
            row = await store.containment_row(conn, containment_id)
    finally:
        for engine in engines:
            await engine.dispose()
    assert row is not None
    assert row.duration_seconds == 600 + 2 * 3600
    assert row.expires_at == NOW + timedelta(seconds=600 + 2 * 3600)
