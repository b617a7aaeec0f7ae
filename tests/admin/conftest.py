"""Admin API fixtures: the app with a bootstrap token, plus stored admin and auditor tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.tokens import issue_token
from app.settings import Settings
from tests.conftest import make_settings

BOOTSTRAP = "vg_bootstrap-token-for-tests"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, bootstrap_token=BOOTSTRAP)


@pytest.fixture
async def admin(engine: AsyncEngine) -> dict[str, str]:
    """Headers of a stored admin token named "alice"."""
    return await _headers(engine, "alice", "admin")


@pytest.fixture
async def auditor(engine: AsyncEngine) -> dict[str, str]:
    return await _headers(engine, "bob", "auditor")


async def _headers(engine: AsyncEngine, name: str, role: str) -> dict[str, str]:
    async with engine.begin() as conn:
        _, token = await issue_token(
            conn, name=name, role="admin" if role == "admin" else "auditor", now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {token}"}
