"""Queries for coming back from an outage: probing the database, and replay look-ups."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.store.models import DEDUPE_DIGEST_PG
from app.store.tables import callbacks
from app.store.tasks import retrieve_exception


class Prober:
    """`SELECT 1` on a connection of its own, from a thread with its own event loop.

    The thread keeps a saturated request loop from making a healthy database look slow:
    overload must not be mistaken for an outage. A probe that overruns is not cancelled
    (that would leak its connection half-open): it runs on, bounded by the connect and
    command timeouts, and the next ping waits on it.
    """

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        args: dict[str, Any] = {}
        if not url.startswith("sqlite"):
            args["connect_args"] = {"timeout": connect_timeout, "command_timeout": 5.0}
        self._engine = create_async_engine(url, poolclass=NullPool, **args)
        self._probe: asyncio.Task[None] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="db-probe", daemon=True)
        self._thread.start()
        self._asked: concurrent.futures.Future[bool] | None = None

    async def ping(self, *, within: float) -> bool:
        """True if the database answered within `within` seconds (timed in the probe thread)."""
        if self._asked is None or self._asked.done():
            self._asked = asyncio.run_coroutine_threadsafe(self._ping(within), self._loop)
        return await asyncio.shield(asyncio.wrap_future(self._asked))

    async def close(self) -> None:
        done = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        await asyncio.wrap_future(done)
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        self._loop.close()

    async def _ping(self, within: float) -> bool:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._select_one())
            self._probe.add_done_callback(retrieve_exception)  # a failed probe is an answer
        done, _ = await asyncio.wait({self._probe}, timeout=within)
        return bool(done) and self._probe.exception() is None

    async def _close(self) -> None:
        if self._probe is not None:
            await asyncio.wait({self._probe})
        await self._engine.dispose()

    async def _select_one(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


async def returned(engine: AsyncEngine, *, within: float) -> None:
    """Wait (up to `within` seconds) until no connection of `engine` is checked out."""
    checked_out = getattr(engine.sync_engine.pool, "checkedout", lambda: 0)
    for _ in range(int(within / 0.05)):
        if not checked_out():
            return
        await asyncio.sleep(0.05)


async def claimed(conn: AsyncConnection, dedupe_key: str) -> tuple[int, datetime] | None:
    """The inbox row holding `dedupe_key`: its id and when its delivery was received."""
    stmt = select(callbacks.c.id, callbacks.c.received_at).where(
        callbacks.c.dedupe_key == dedupe_key
    )
    if conn.dialect.name == "postgresql":  # found through the index on its digest
        digest = text(f"{DEDUPE_DIGEST_PG} = (md5(:digest_of)::uuid)")
        stmt = stmt.where(digest.bindparams(digest_of=dedupe_key))
    row = (await conn.execute(stmt)).one_or_none()
    return (int(row.id), row.received_at) if row is not None else None
