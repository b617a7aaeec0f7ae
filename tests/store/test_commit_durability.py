"""The live counting statement commits without waiting for the disk; nothing else does.

Its transaction sets synchronous_commit off for itself only (set_config(..., true)): the
verification's store, on the same connection right after, commits synchronously, and its
flush covers the count. If the setting leaked into the session, decisions would be answered
before they were durable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, text

from app.settings import Settings
from app.sinch import samples
from tests.conftest import make_settings
from tests.engines import renew_connections
from tests.support import SinchSender

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, database_pool_size=1)


async def test_only_the_live_count_commits_asynchronously(
    client: AsyncClient, sinch: SinchSender
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    statements: list[str] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda r: statements.append(r.query))

    event.listen(runtime.counter_engine.sync_engine, "connect", on_connect)
    await runtime.held.close()
    await renew_connections(runtime.counter_engine)  # the one counting connection made anew, logged

    # The starter policy's range limit counts allowed attempts: the store settles them.
    response = await sinch.post(samples.request_event(number="+46701234567", price=0.05))
    assert response.status_code == 200 and response.json()["action"] == "allow"

    flagged = [i for i, sql in enumerate(statements) if ASYNC_COMMIT in sql]
    stores = [i for i, sql in enumerate(statements) if "INSERT INTO verifications" in sql]
    assert len(flagged) == 1 and "INSERT INTO counters" in statements[flagged[0]]
    assert len(stores) == 1 and stores[0] > flagged[0], "the synchronous store comes after"

    async with runtime.held.lend() as conn:
        setting = (await conn.execute(text("SHOW synchronous_commit"))).scalar_one()
    assert setting == "on", "the count's setting must end with its own transaction"
