"""Alembic: upgrade, downgrade and 'autogenerate finds no diff', on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from app.store.base import create_engine
from app.store.migrate import current_revision, downgrade, head_revision, upgrade
from app.store.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _read_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_diff)
    finally:
        await engine.dispose()


async def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


def test_autogenerate_finds_no_diff_after_upgrade(database_url: str) -> None:
    assert asyncio.run(_read_diff(database_url)) == []


def test_downgrade_to_base_then_upgrade_round_trips(database_url: str) -> None:
    downgrade(database_url, "base")
    assert asyncio.run(_revision(database_url)) is None
    upgrade(database_url)
    assert asyncio.run(_revision(database_url)) == head_revision()
    assert asyncio.run(_read_diff(database_url)) == []
