"""Queries for coming back from an outage: probing the database, and replay look-ups."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.store.models import CallbackRow

callbacks = cast(Table, CallbackRow.__table__)


class Prober:
    """`SELECT 1` on a connection of its own, outside the request pools.

    A probe that overruns is not cancelled (that would leak its connection half-open): it
    runs on, bounded by the connect and command timeouts, and the next ping awaits it.
    """

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        args: dict[str, Any] = {}
        if not url.startswith("sqlite"):
            args["connect_args"] = {"timeout": connect_timeout, "command_timeout": 5.0}
        self._engine = create_async_engine(url, poolclass=NullPool, **args)
        self._probe: asyncio.Task[None] | None = None

    async def ping(self, *, within: float) -> bool:
        """True if the database answered within `within` seconds."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._select_one())
            self._probe.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({self._probe}, timeout=within)
        return bool(done) and self._probe.exception() is None

    async def close(self) -> None:
        if self._probe is not None:
            await asyncio.wait({self._probe})
            self._probe.exception()
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
    row = (await conn.execute(stmt)).one_or_none()
    return (int(row.id), row.received_at) if row is not None else None


def _retrieve(task: asyncio.Task[None]) -> None:
    """A failed probe is an answer, not an error to report."""
    if not task.cancelled():
        task.exception()
