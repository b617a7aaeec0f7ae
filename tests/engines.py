"""Making an app's engine open new connections mid-test, without leaking the old ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


async def renew_connections(engine: AsyncEngine) -> None:
    """`engine.dispose()`, and the connections checked out at that moment (a background job's:
    the containment watcher polls every 0.5 s) closed when given back. Plain dispose puts
    them back in the old pool, which nothing closes: the garbage collector finalised them
    later, an unraisable ResourceWarning in whichever test it ran in (on a loaded machine)."""
    old = engine.sync_engine.pool
    await engine.dispose()

    def close_on_return(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.close()

    event.listen(old, "checkin", close_on_return)
