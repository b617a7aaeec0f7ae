"""Audit fixtures: an app with a bootstrap admin token, an auditor token, direct row inserts."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from tests.audit.rows import ADMIN_TOKEN, auditor_token
from tests.conftest import make_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, bootstrap_token=ADMIN_TOKEN)


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def auditor(engine: AsyncEngine) -> dict[str, str]:
    return {"Authorization": f"Bearer {await auditor_token(engine)}"}
