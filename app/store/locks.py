"""Row locks that hold on SQLite too."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, update
from sqlalchemy.ext.asyncio import AsyncConnection


async def lock_rows(conn: AsyncConnection, table: Table, where: ColumnElement[bool]) -> None:
    """What a SELECT … FOR UPDATE of `table`'s rows `where` does on PostgreSQL, on SQLite too.

    SQLite has no row locks (SQLAlchemy leaves FOR UPDATE out there) and its driver begins a
    transaction only at the first write, so a read-check-write made its reads outside any
    transaction: two processes (`serve --workers 2`, or a CLI beside the server) both read
    the same state and both wrote as if the other had not. A write that changes nothing,
    first, takes the database's write lock (waiting for another writer's commit, up to the
    busy timeout): what the transaction reads after it stays current until it ends. On
    PostgreSQL the caller's FOR UPDATE does the locking; this does nothing there.
    """
    if conn.dialect.name == "sqlite":
        key = next(iter(table.primary_key.columns))
        await conn.execute(update(table).where(where).values({key.name: key}))
