"""The background jobs' reader (store/base.py `create_reader`): on a SQLite file a second
connection, reading beside the request path's writer; each transaction one snapshot; no
write through it. Elsewhere the engine itself."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.base import create_engine, create_reader

COUNT = text("SELECT count(*) FROM lists")


def _insert(name: str) -> str:
    columns = "name, kind, description, created_at"
    return f"INSERT INTO lists ({columns}) VALUES ('{name}', 'number', '', '2026-12-07')"


@pytest.fixture
def path(tmp_path: Path, sqlite_template: Path) -> Path:
    copy = tmp_path / "verifyguard.db"
    shutil.copy(sqlite_template, copy)
    return copy


@pytest.fixture
async def engines(path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    reader = create_reader(engine)
    yield engine, reader
    await reader.dispose()
    await engine.dispose()


async def test_a_transaction_of_the_reader_is_one_snapshot(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, reader = engines
    assert reader is not engine
    async with reader.connect() as conn:
        assert await conn.scalar(COUNT) == 0
        async with engine.begin() as writer:  # the writer commits meanwhile: not held back
            await writer.execute(text(_insert("blocklist")))
        assert await conn.scalar(COUNT) == 0  # the same snapshot
    async with reader.connect() as conn:
        assert await conn.scalar(COUNT) == 1  # a new transaction sees the commit


async def test_the_writer_commits_while_a_reader_transaction_is_open(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, reader = engines
    async with reader.connect() as conn:
        await conn.scalar(COUNT)

        async def write() -> None:
            async with engine.begin() as writer:
                await writer.execute(text(_insert("allowlist")))

        await asyncio.wait_for(write(), 2)  # far under the busy timeout
    async with engine.connect() as conn:
        assert await conn.scalar(COUNT) == 1


async def test_nothing_is_written_through_the_reader(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    _, reader = engines
    async with reader.connect() as conn:
        with pytest.raises(OperationalError, match="readonly"):
            await conn.execute(text(_insert("blocklist")))
    async with reader.connect() as conn:
        assert await conn.scalar(COUNT) == 0


@pytest.mark.postgres
async def test_postgresql_reads_through_its_engine(postgres_database: str) -> None:
    engine = create_engine(postgres_database)
    assert create_reader(engine) is engine
    await engine.dispose()


async def test_an_in_memory_database_reads_through_its_engine() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    assert create_reader(engine) is engine
    await engine.dispose()
