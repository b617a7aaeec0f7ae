"""The connection a group commit's works run on (store/group_commit.py), and the writes a
batch defers on it.

`ThreadConnection` is what request-path code uses of an AsyncConnection, run synchronously
on the writer's thread. On it a batch also saves statements: `write_later` defers a write
to one executemany per statement and batch (a decision's verification row, its shadow
matches: store/inbox.py), and `carry` keeps a change for the batch's next statement of its
kind to take (a decision's settle rides on the next decision's count: store/counters.py).
Anything else that runs on it (`execute`) first runs what is deferred and carried, so no
read in the batch sees the database without them; the batch runs them before its COMMIT.
Elsewhere (PostgreSQL, a transaction of its own) each is a plain `execute`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.sqlite_statements import plan, run, run_many

T = TypeVar("T")
Carrier = Callable[[AsyncConnection, list[Any]], Awaitable[None]]


class Suspended(RuntimeError):
    """Work run on the writer thread awaited something that does not complete at once."""


class ThreadConnection:
    """What request-path code uses of an AsyncConnection, run synchronously; with the
    batch's deferred writes (see `write_later`)."""

    def __init__(self, sync: Connection) -> None:
        self._sync = sync
        self.statements = 0  # run or deferred so far: a work that failed before any wrote nothing
        self._later: dict[Any, list[Any]] = {}  # statement: its parameters, in order
        self._carried: dict[str, tuple[Carrier, list[Any]]] = {}

    @property
    def dialect(self) -> Dialect:
        return self._sync.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        self.flush()
        self.statements += 1
        return self._sync.execute(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        self.flush()
        self.statements += 1
        return self._sync.scalar(statement, parameters)

    def now(self, statement: Any, parameters: Any = None) -> Any:
        """Run `statement` ahead of the deferred writes (`run_beside`): on the sqlite3
        cursor when it has a plan (store/sqlite_statements.py; its result is then `Rows`)."""
        self.statements += 1
        found = plan(self._sync, statement) if isinstance(parameters, Mapping) else None
        if found is not None:
            return run(self._sync, found, parameters)
        return self._sync.execute(statement, parameters)

    def later(self, statement: Any, parameters: Mapping[str, Any]) -> None:
        self.statements += 1
        self._later.setdefault(statement, []).append(parameters)

    def flush(self) -> None:
        """Run the deferred writes: one executemany per statement, in the order each was
        first deferred; then what is carried, each kind by its own carrier."""
        while self._later or self._carried:
            later, self._later = self._later, {}
            for statement, rows in later.items():
                self.statements += 1
                found = plan(self._sync, statement)
                if found is not None:
                    run_many(self._sync, found, rows)
                else:
                    self._sync.execute(statement, rows)
            carried, self._carried = self._carried, {}
            for carrier, items in carried.values():
                drive(awaited(carrier(cast(AsyncConnection, self), items)))

    def discard(self) -> None:
        """Forget the deferred writes and what is carried (their work failed)."""
        self._later, self._carried = {}, {}

    def carry(self, kind: str, item: Any, carrier: Carrier) -> None:
        """Keep `item` for the next statement that takes its `kind` (`take`); if none does,
        `carrier(conn, items)` writes them when the deferred writes run (`write_later`)."""
        self.statements += 1
        self._carried.setdefault(kind, (carrier, []))[1].append(item)

    def take(self, kind: str) -> list[Any]:
        """What is carried of `kind`, for the caller's next statement to write."""
        found = self._carried.pop(kind, None)
        return found[1] if found is not None else []


async def run_beside(conn: AsyncConnection, statement: Any, parameters: Any = None) -> Any:
    """`conn.execute(statement, parameters)`, on a batch's connection ahead of its deferred
    writes: only for statements whose outcome cannot depend on those writes and that those
    writes cannot depend on (the inbox claim, the counters: see `write_later`)."""
    if isinstance(conn, ThreadConnection):
        return conn.now(statement, parameters)
    return await conn.execute(statement, parameters)


async def write_later(conn: AsyncConnection, statement: Any, parameters: Mapping[str, Any]) -> None:
    """`conn.execute(statement, parameters)`, on a batch's connection deferred: run with
    every other deferral of the same statement in one executemany, before the batch's next
    statement not `run_beside` and at the latest before its COMMIT (or, with a savepoint
    per work, before the work's release).

    So a statement deferred may run after later statements `run_beside`, and after other
    statements deferred later (grouped by statement, each group in order): defer only
    writes whose result no such statement reads or changes, and that nothing within the
    batch reads back unless through an ordinary `execute` (which runs them first). Used for
    a decision's verification row and shadow matches: the decision's other statements
    (counters, the inbox claim) touch neither table."""
    if isinstance(conn, ThreadConnection):
        conn.later(statement, parameters)
    else:
        await conn.execute(statement, parameters)


def batch_connection(conn: AsyncConnection) -> ThreadConnection | None:
    """The batch's connection, if `conn` is one (what it `carry`s waits for a statement to
    take it: store/counters.py)."""
    return conn if isinstance(conn, ThreadConnection) else None


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, outside any event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise Suspended("work on the writer thread awaited something that did not complete")


async def awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
