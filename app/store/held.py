"""A fixed set of connections kept open and lent to one request at a time, in arrival order.

The counting connections of PostgreSQL serve every request event. Checking one out of
SQLAlchemy's pool and back costs two greenlet switches per request (~6 % of a decision's
CPU), and the pool's queue lets a newcomer take a connection just released to a waiter,
which then waits again at the back (under load a few unlucky requests waited for hundreds of
milliseconds). Here the connections stay checked out of the engine's pool for the life of
the process, and waiters are served first come, first served.

A connection whose user failed (a lost server, an error mid-statement) is invalidated and a
new one is opened when it is next lent: a broken one is never lent twice. One whose socket
was closed while it sat idle is replaced before it is lent (group commit uses few of the
set, so after an outage most were never tried by a request before the replay took them).
A borrower that leaves for its own reasons raises `LeaveIntact`, and the connection is
kept: discarding it for a missed deadline made every late decision under overload cost a
reconnection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import AbstractAsyncContextManager, suppress
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class LeaveIntact(Exception):
    """Raised by a borrower to leave `lend` early for its own reasons (a missed deadline):
    the connection did nothing wrong and goes back to the set as it is."""


class HeldConnections:
    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self.engine = engine
        self.size = size
        # asyncio.Semaphore is fair (a newcomer does not overtake a waiter; an asyncio.Queue
        # would let it), and holding it guarantees an idle connection (None: to be opened).
        self._gate = asyncio.Semaphore(size)
        self._idle: deque[AsyncConnection | None] = deque([None] * size)

    def lend(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for the block, back to the set afterwards (replaced if it failed)."""
        return _Loan(self)

    async def open(self) -> None:
        """Open every connection now: a burst right after a (re)start would otherwise wait
        for them to be made one after another, and its first answers miss the deadline."""
        missing = sum(1 for conn in self._idle if conn is None)
        opened = await asyncio.gather(
            *(self.engine.connect() for _ in range(missing)), return_exceptions=True
        )
        fresh = [conn for conn in opened if isinstance(conn, AsyncConnection)]
        for i, conn in enumerate(self._idle):
            if conn is None and fresh:
                self._idle[i] = fresh.pop()
        await asyncio.gather(*(conn.close() for conn in fresh))  # lent and opened meanwhile
        for failure in opened:
            if isinstance(failure, BaseException):
                raise failure

    async def close(self) -> None:
        """Give the idle connections back to the engine's pool (before it is disposed); the
        set stays usable: they are opened again when next lent."""
        taken = [conn for conn in self._idle if conn is not None]
        self._idle = deque([None] * len(self._idle))
        await asyncio.gather(*(conn.close() for conn in taken), return_exceptions=True)


def _usable(conn: AsyncConnection) -> bool:
    """Not closed, nor its driver's connection lost while it sat idle (a cut socket): lent
    such a one, a batch or a replay failed, and each tripped the breaker again."""
    sync = conn.sync_connection
    if conn.closed or conn.invalidated or sync is None or sync.closed:
        return False
    driver = getattr(sync.connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    return not (callable(is_closed) and is_closed())


class _Loan:
    """One `lend`: written as a class, not an asynccontextmanager generator, which costs
    ~15k instructions more a loan (each batch takes one; a lone request event, two)."""

    __slots__ = ("_conn", "_held")

    def __init__(self, held: HeldConnections) -> None:
        self._held = held
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        held = self._held
        await held._gate.acquire()  # fair: a newcomer does not overtake a waiter
        conn = held._idle.popleft()
        try:
            if conn is None or not _usable(conn):
                if conn is not None:
                    await _discard(conn)
                conn = await held.engine.connect()
        except BaseException:
            if conn is not None:
                await _discard(conn)
            held._idle.append(None)  # opened when next lent
            held._gate.release()
            raise
        self._conn = conn
        return conn

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: TracebackType | None
    ) -> None:
        held, conn = self._held, self._conn
        try:
            # A failed borrower's connection is replaced; one that left for its own reasons
            # (LeaveIntact) goes back as it is.
            if error is not None and not isinstance(error, LeaveIntact) and conn is not None:
                await _discard(conn)
                conn = None
        finally:
            held._idle.append(conn)
            held._gate.release()


async def _discard(conn: AsyncConnection) -> None:
    with suppress(Exception):
        await conn.invalidate()
    with suppress(Exception):
        await conn.close()
