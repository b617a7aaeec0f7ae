"""A long snapshot on the SQLite reader is caught up after (store/base.py
`_release_snapshot`): once it is released, the reader's connection copies back (a PASSIVE
checkpoint, in the same hop as its ROLLBACK) what the WAL kept for it, so the writer's next
automatic checkpoint does not copy it all inside a COMMIT; a short one leaves it to the
writer. Read from the file's WAL index: its last frame and the frames copied back."""

from __future__ import annotations

import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import base
from app.store.base import create_engine, create_reader
from tests.store.test_sqlite_reader import COUNT, _insert


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
