"""Job leases: one row per cluster-wide job; whoever holds it unexpired runs the job.

The claim is an UPDATE of the lease row inside the job's own transaction: on PostgreSQL a
second claimant blocks on the row lock until the holder commits and then finds it taken;
on SQLite the one writer serialises them. So two processes never run one job's step at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import JobLeaseRow

leases = cast(Table, JobLeaseRow.__table__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def claim(
    conn: AsyncConnection, *, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or extend the lease `name` for `holder` until now + ttl; False if another holds it."""
    stmt = (
        update(leases)
        .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    )
    return (await conn.execute(stmt)).rowcount == 1


async def release(conn: AsyncConnection, *, name: str, holder: str) -> None:
    """Give the lease up (on shutdown), so another process takes over at once."""
    stmt = (
        update(leases)
        .where(leases.c.name == name, leases.c.holder == holder)
        .values(holder=None, expires_at=EPOCH)
    )
    await conn.execute(stmt)
