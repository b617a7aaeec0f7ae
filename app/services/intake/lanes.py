"""How a decision reaches the database: on a connection of its own, or in batches.

A `Lane` counts an attempt, stores its decision and runs the rare extra work (a
redelivery's stored answer, taking its count back). `OnConnection` does each on the
connection its scope gave the decision (SQLite's shared transaction, or a connection of
its own: scope.py). `PgBatches` is group commit on PostgreSQL: request events that arrive
together share one counting statement (store/pg_batch_count.py: per-attempt running
totals in arrival order, so a burst is still cut at exactly its limit) and one storing
statement with one synchronous commit (store/pg_batch_store.py). Each stage is a `Batcher`:
a lone request is written at once, and while one batch is in flight the next gathers. No
answer leaves before its store batch committed.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.facts import Facts
from app.services.aggregates import Aggregator, Counted, Counting, CountThrough
from app.services.intake.batching import Batcher
from app.services.policy.cache import PolicyCache
from app.services.resilience.errors import is_outage
from app.store import inbox
from app.store.counter_model import BucketClock, Changes, Reads, Totals
from app.store.held import LeaveIntact
from app.store.pg_batch_count import CountItem, count_batch
from app.store.pg_batch_store import StoreItem, store_batch

T = TypeVar("T")
BATCH = 256  # request events per statement at most
STORES_IN_FLIGHT = 2  # store batches committing at once (store_batches)


class Late(TimeoutError, LeaveIntact):
    """A decision that found itself past its deadline: its work is abandoned (on SQLite the
    transaction rolls back), and a held PostgreSQL connection is kept, not discarded."""


class _Skipped(enum.Enum):
    LATE = "late"


class _Queued(NamedTuple):
    """An attempt waiting for its counting batch, and whether it was answered meanwhile
    (a named tuple: one per request event, see counter_model.Reads)."""

    item: CountItem
    late: asyncio.Event


class Lane(Protocol):
    async def count(
        self,
        aggregator: Aggregator,
        policies: PolicyCache,
        facts: Facts,
        version: int | None,
        late: asyncio.Event,
    ) -> Counted:
        """Count the attempt under the live policy and read its windows; `Late` if it was
        answered (past its deadline) before its count could start."""
        ...

    async def store(self, item: StoreItem) -> int | None:
        """Store the decision durably: its inbox id, or None for a redelivery."""
        ...

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`work` on a connection (rare: a redelivery's extra statements)."""
        ...

    async def finish(self, counted: Counted, *, allowed: bool, duplicate: bool) -> None:
        """`counted.finish` where its counters live (after `store`; before the answer, but
        for an allowed attempt's settle in Redis: redis_batches.py)."""
        ...


@dataclass(frozen=True, slots=True)
class OnConnection:
    """Every statement of the decision on the connection its scope gave it (SQLite's: the
    group commit's, or with Redis counters a connection of its own: scope.py)."""

    conn: AsyncConnection

    async def count(
        self,
        aggregator: Aggregator,
        policies: PolicyCache,
        facts: Facts,
        version: int | None,
        late: asyncio.Event,
    ) -> Counted:
        return await aggregator.observe_live(self.conn, policies, facts, version=version)

    async def store(self, item: StoreItem) -> int | None:
        return await inbox.store_decision(
            self.conn,
            claim=item.claim,
            verification=item.verification,
            shadow=item.shadow,
            settle=item.settle,
            decision_json=item.decision_json,
        )

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        return await work(self.conn)

    async def finish(self, counted: Counted, *, allowed: bool, duplicate: bool) -> None:
        await counted.finish(self.conn, allowed=allowed, duplicate=duplicate)


class StoreBatched:
    """What the batched lanes share: the decision's store through the store batches, its rare
    extra work on a lent connection."""

    __slots__ = ()
    lend: Counting
    stores: Batcher[StoreItem, int | None]

    async def store(self, item: StoreItem) -> int | None:
        return await self.stores.submit(item)

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self.lend() as conn:
            return await work(conn)


@dataclass(eq=False, slots=True)
class PgBatches(StoreBatched):
    """Group commit of request events on PostgreSQL (see the module docstring); also their
    `Decisions` scope: each decision's work runs with this one lane."""

    lend: Counting
    """A held connection for a batch (or a decision's rare extra work)."""
    clock: BucketClock
    on_counted: Callable[[int, float], None] | None = None
    on_stored: Callable[[int, float], None] | None = None
    counts: Batcher[_Queued, Totals | _Skipped | None] = field(init=False)
    stores: Batcher[StoreItem, int | None] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = Batcher(
            self._count_batch,
            limit=BATCH,
            name="verifyguard-count-batches",
            on_written=self.on_counted,
            split=not_outage,
        )
        self.stores = store_batches(self.lend, on_stored=self.on_stored)

    async def decide(self, work: Callable[[Lane, int | None], Awaitable[T]]) -> T:
        return await work(self, None)

    async def count(
        self,
        aggregator: Aggregator,
        policies: PolicyCache,
        facts: Facts,
        version: int | None,
        late: asyncio.Event,
    ) -> Counted:
        async def count(changes: Changes, reads: Reads, version: int) -> Totals | None:
            totals = await self.counts.submit(_Queued(CountItem(changes, reads, version), late))
            if totals is _Skipped.LATE:
                raise Late("the deadline passed before its counting batch had a connection")
            return totals

        return await observe_batched(aggregator, count, policies, facts, self.lend)

    async def finish(self, counted: Counted, *, allowed: bool, duplicate: bool) -> None:
        async with self.lend() as conn:  # only a redelivery's: the settle is in the store
            await counted.finish(conn, allowed=allowed, duplicate=duplicate)

    async def close(self) -> None:
        await self.counts.close()
        await self.stores.close()

    async def _count_batch(self, queued: Sequence[_Queued]) -> list[Totals | _Skipped | None]:
        async with self.lend() as conn:
            # Answered while the batch waited for a connection: counting them now would
            # only hold it from attempts still in time (and leave them pending as allowed).
            skip = [q.late.is_set() for q in queued]
            live = [q.item for q, late in zip(queued, skip, strict=True) if not late]
            totals = iter(await count_batch(conn, self.clock, live) if live else [])
            return [_Skipped.LATE if late else next(totals) for late in skip]


async def observe_batched(
    aggregator: Aggregator,
    count: CountThrough,
    policies: PolicyCache,
    facts: Facts,
    lend: Counting,
) -> Counted:
    """The attempt counted through a batched lane's `count` under the policy compiled last;
    when none is loaded yet or it changed, on a connection of its own, which reloads it."""
    counted = await aggregator.observe_through(count, policies, facts)
    if counted is not None:
        return counted
    async with lend() as conn:
        return await aggregator.observe_live(conn, policies, facts)


def store_batches(
    lend: Counting, *, on_stored: Callable[[int, float], None] | None = None
) -> Batcher[StoreItem, int | None]:
    """Decided request events that arrive together stored by one statement and one commit
    (store/pg_batch_store.py), on a held connection: each gets its inbox id, or None. Two
    batches may be in flight: they commute (each locks its counter rows in key order and
    adds its settles; a redelivery racing its first delivery waits on the inbox's unique
    key as before), so a decision decided while one commits does not wait for that commit
    before its own starts."""

    async def write(items: Sequence[StoreItem]) -> list[int | None]:
        async with lend() as conn:
            return await store_batch(conn, items)

    return Batcher(
        write,
        limit=BATCH,
        name="verifyguard-store-batches",
        on_written=on_stored,
        split=not_outage,
        concurrency=STORES_IN_FLIGHT,
    )


def not_outage(exc: Exception) -> bool:
    """A failed batch is tried item by item, unless the database is away."""
    return not is_outage(exc)
