"""The counting connections held open: lent in arrival order, a failed one never lent again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.base import create_engine
from app.store.held import HeldConnections

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


@pytest.fixture
async def autocommit(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=3, autocommit=True)
    yield engine
    await engine.dispose()


async def _backend(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_connections_are_opened_at_start_and_reused(autocommit: AsyncEngine) -> None:
    held = HeldConnections(autocommit, 2)
    await held.open()
    pool = autocommit.pool
    assert pool.checkedout() == 2  # type: ignore[attr-defined]
    seen = set()
    for _ in range(6):
        async with held.lend() as conn:
            seen.add(await _backend(conn))
    assert len(seen) == 2, "the same two server connections, lent in turn"
    assert pool.checkedout() == 2  # type: ignore[attr-defined]
    await held.close()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_connection_whose_user_failed_is_replaced(autocommit: AsyncEngine) -> None:
    held = HeldConnections(autocommit, 1)
    await held.open()
    async with held.lend() as conn:
        first = await _backend(conn)

    async def failing_request() -> None:
        async with held.lend() as conn:
            assert await _backend(conn) == first
            raise RuntimeError("mid-request failure")

    with pytest.raises(RuntimeError):
        await failing_request()
    async with held.lend() as conn:
        assert await _backend(conn) != first
    await held.close()


async def test_a_connection_killed_by_the_server_is_lent_once(autocommit: AsyncEngine) -> None:
    """The lost connection fails its user; the next request gets a new one."""
    held = HeldConnections(autocommit, 1)
    await held.open()
    async with held.lend() as conn:
        victim = await _backend(conn)
    async with autocommit.connect() as admin:
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})

    # Either its closed socket is seen before it is lent and it is replaced at once, or it
    # is lent once and fails its user (whatever the driver raises): never lent twice.
    first: int | None = None
    with suppress(Exception):
        async with held.lend() as conn:
            first = await _backend(conn)
    assert first != victim
    async with held.lend() as conn:
        assert await _backend(conn) != victim
    await held.close()


async def test_waiters_are_served_in_arrival_order(autocommit: AsyncEngine) -> None:
    """A newcomer never takes a connection from under a request already waiting."""
    held = HeldConnections(autocommit, 1)
    await held.open()
    order: list[int] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with held.lend():
            await release.wait()

    async def waiter(n: int) -> None:
        async with held.lend() as conn:
            order.append(n)
            await _backend(conn)  # yields to the loop while holding it

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiters = []
    for n in range(5):
        waiters.append(asyncio.create_task(waiter(n)))
        await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)
    late = asyncio.create_task(waiter(99))  # arrives as the holder gives its connection back
    await asyncio.gather(first, *waiters, late)
    assert order == [0, 1, 2, 3, 4, 99]
    await held.close()
