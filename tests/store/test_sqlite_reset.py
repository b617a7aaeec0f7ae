"""SQLite's pool resets a connection checked in only when a transaction is open
(store/base.py `_rollback_if_open`): a group commit batch, checked in after its COMMIT,
makes no ROLLBACK trip to the connection's thread; a connection checked in with a
transaction open still has it rolled back, its write lock released."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.base import create_engine
from app.store.group_commit import GroupCommit


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def rollbacks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each ROLLBACK aiosqlite is asked for (the real one still runs), and whether a
    transaction was open for it."""
    seen: list[bool] = []
    rollback: Callable[[aiosqlite.Connection], Any] = aiosqlite.Connection.rollback

    async def counted(self: aiosqlite.Connection) -> None:
        seen.append(self.in_transaction)
        await rollback(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
    return seen


async def _insert(conn: AsyncConnection, key: str) -> None:
    await conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": key})


async def test_a_committed_batch_is_checked_in_without_a_rollback(
    sqlite: AsyncEngine, rollbacks: list[bool]
) -> None:
    group = GroupCommit(sqlite)
    for key in ("a", "b", "c"):  # one at a time: a batch, a checkout and a check-in each
        await group.run(functools.partial(_insert, key=key))
        await asyncio.sleep(0.01)
    await group.close()
    assert rollbacks == [], "a ROLLBACK was sent for a connection with no transaction open"
    async with sqlite.connect() as conn:
        keys = (await conn.execute(text("SELECT k FROM t ORDER BY k"))).scalars().all()
    assert keys == ["a", "b", "c"]


async def test_a_transaction_left_open_is_rolled_back_at_check_in(
    sqlite: AsyncEngine, rollbacks: list[bool], tmp_path: Path
) -> None:
    async with sqlite.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        await raw.execute("BEGIN IMMEDIATE")
        await raw.execute("INSERT INTO t VALUES ('left open')")
        assert raw.in_transaction
    assert rollbacks == [True]

    async with sqlite.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
    assert count == 0, "the open transaction's write survived the check-in"
    # Its write lock went with it: another connection takes it at once.
    async with aiosqlite.connect(tmp_path / "r.db", timeout=0) as other:
        await other.execute("BEGIN IMMEDIATE")
        await other.execute("INSERT INTO t VALUES ('other')")
        await other.commit()
