"""Queries for coming back from an outage: probing the database, and replay look-ups."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.store.models import CallbackRow

callbacks = cast(Table, CallbackRow.__table__)


def probe_engine(url: str, *, connect_timeout: float) -> AsyncEngine:
    """An engine outside the request pools: a probe never waits behind stuck requests."""
    args = {} if url.startswith("sqlite") else {"connect_args": {"timeout": connect_timeout}}
    return create_async_engine(url, poolclass=NullPool, **args)


async def ping(engine: AsyncEngine, *, within: float) -> bool:
    """`SELECT 1` answered within `within` seconds; any failure means no."""

    async def select_one() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(select_one(), within)
    except Exception:
        return False
    return True


async def claimed(conn: AsyncConnection, dedupe_key: str) -> tuple[int, datetime] | None:
    """The inbox row holding `dedupe_key`: its id and when its delivery was received."""
    stmt = select(callbacks.c.id, callbacks.c.received_at).where(
        callbacks.c.dedupe_key == dedupe_key
    )
    row = (await conn.execute(stmt)).one_or_none()
    return (int(row.id), row.received_at) if row is not None else None
