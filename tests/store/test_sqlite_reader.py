"""The background jobs' reader (store/base.py `create_reader`): on a SQLite file a second
connection, reading beside the request path's writer; each transaction one snapshot; no
write through it; a long snapshot caught up once released. Elsewhere the engine itself."""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import base
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


# A long snapshot on the reader is caught up after (store/base.py `_release_snapshot`): once
# released, the reader's connection copies back (a PASSIVE checkpoint, in the same hop as its
# ROLLBACK) what the WAL kept for it, so the writer's next automatic checkpoint does not copy
# it all inside a COMMIT; a short one leaves it to the writer. Read from the WAL index.


def _wal_index(path: Path) -> tuple[int, int]:
    """(the WAL's last valid frame, the frames copied back into the database): the WAL
    index header's mxFrame and its checkpoint information's nBackfill, in the -shm file."""
    shm = path.with_name(path.name + "-shm").read_bytes()
    (last,) = struct.unpack_from("=I", shm, 16)
    (backfilled,) = struct.unpack_from("=I", shm, 96)
    return last, backfilled


async def _writes_beside_a_snapshot(path: Path, engine: AsyncEngine, reader: AsyncEngine) -> None:
    async with engine.begin() as conn:  # the WAL copied back so far: a clean start
        await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    async with reader.connect() as conn:
        assert (await conn.execute(COUNT)).scalar() == 0  # the snapshot begins
        for i in range(40):
            async with engine.begin() as writer:
                await writer.execute(text(_insert(f"list-{i}")))
        assert (await conn.execute(COUNT)).scalar() == 0  # still the snapshot's
    async with reader.connect() as conn:
        assert (await conn.execute(COUNT)).scalar() == 40  # released: a new one sees them


async def test_a_long_snapshot_released_copies_back_what_the_wal_kept_for_it(
    path: Path, engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "CATCH_UP_AFTER", 0.0)  # every snapshot counts as long
    await _writes_beside_a_snapshot(path, *engines)
    last, backfilled = _wal_index(path)
    assert last >= 40
    assert backfilled == last


async def test_a_short_snapshot_leaves_the_wal_to_the_writers_checkpoint(
    path: Path, engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "CATCH_UP_AFTER", 3600.0)
    await _writes_beside_a_snapshot(path, *engines)
    last, backfilled = _wal_index(path)
    assert last >= 40
    assert backfilled < last  # 40 small commits: under the writer's automatic checkpoint
