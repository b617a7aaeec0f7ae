"""Where a request event's database work runs: its own transaction, or a shared one.

`Scope.run(work)` runs `work(conn)` — counting, deciding and storing one request event —
and returns its result once that is durable. On PostgreSQL (and wherever counters live
outside the database) each request event has its own connection and statements
(`PerRequest`); on SQLite with its counters in the database, request events that arrive
together share one transaction on the writer's thread (store/group_commit.py).

A request event is decided through `Decisions.decide(work)`, which runs `work(lane,
version)`: `lane` (lanes.py) is how its statements reach the database, and `version` the
policy version its transaction already read (a shared transaction reads it once for all its
decisions), or None where each reads its own. On PostgreSQL request events are
group-committed instead (lanes.PgBatches, or redis_batches.RedisBatches with the counters
in Redis; built by the composition root): `PerRequest` then serves the rarer callbacks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.aggregates import Counting
from app.services.intake.lanes import Lane, OnConnection
from app.store.group_commit import GroupCommit

T = TypeVar("T")


class Scope(Protocol):
    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...

    async def close(self) -> None:
        """Finish the work queued, at shutdown (after the last request event)."""


class Decisions(Protocol):
    async def decide(self, work: Callable[[Lane, int | None], Awaitable[T]]) -> T: ...

    async def close(self) -> None:
        """Finish the work queued, at shutdown (after the last request event)."""


@dataclass(frozen=True, slots=True)
class Batched:
    """Request events decided in shared transactions, the policy version read once for each
    (its group commit's prologue: see the composition root)."""

    group: GroupCommit

    async def decide(self, work: Callable[[Lane, Any], Awaitable[T]]) -> T:
        return await self.group.run_primed(lambda conn, version: work(OnConnection(conn), version))

    async def close(self) -> None:
        await self.group.close()


@dataclass(frozen=True, slots=True)
class Transactional:
    """Each callback in a transaction of its own."""

    engine: AsyncEngine

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self.engine.begin() as conn:
            return await work(conn)

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class PerRequest:
    """Each request event on a connection of its own (autocommit on PostgreSQL)."""

    counting: Counting

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self.counting() as conn:
            return await work(conn)

    async def decide(self, work: Callable[[Lane, int | None], Awaitable[T]]) -> T:
        async with self.counting() as conn:
            return await work(OnConnection(conn), None)

    async def close(self) -> None:
        return None
