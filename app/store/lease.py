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
from app.store.upsert import insert_for

leases = cast(Table, JobLeaseRow.__table__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def claim(
    conn: AsyncConnection, *, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or extend the lease `name` for `holder` until now + ttl; False if another holds it.

    A missing lease row (a job never run, or a cleared table) is created by its first claimant.
    One that loses that race (its insert waited for the winner's and found the row) claims
    the row the winner committed, as it would have had the row been there: the winner may be
    this holder's own other job, and then it holds the lease too.
    """
    stmt = (
        update(leases)
        .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    )
    if (await conn.execute(stmt)).rowcount == 1:
        return True
    values = {"name": name, "holder": holder, "expires_at": now + ttl}
    created = insert_for(conn, leases).values(**values).on_conflict_do_nothing()
    if (await conn.execute(created)).rowcount == 1:
        return True
    return bool((await conn.execute(stmt)).rowcount == 1)


async def release(conn: AsyncConnection, *, name: str, holder: str) -> None:
    """Give the lease up (on shutdown), so another process takes over at once."""
    stmt = (
        update(leases)
        .where(leases.c.name == name, leases.c.holder == holder)
        .values(holder=None, expires_at=EPOCH)
    )
    await conn.execute(stmt)
