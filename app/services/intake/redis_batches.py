"""Group commit on PostgreSQL with the counters in Redis.

Request events that arrive together share one read of the live policy version, are
counted through the Redis backend (whose script runs already carry the calls of concurrent
callers together, each atomic: a burst is still cut at exactly its limit), and share one
storing statement with one commit (lanes.store_batches). A denied attempt's settle (or a
redelivery's forgetting) goes to Redis after its store batch committed, and its answer
waits for it; an allowed one's writes nothing (its hold is its allowed count already:
counter_model) and is not made at all.

The version is read by a batch that starts after the request arrived (a `Batcher`: while
one read is in flight the next gathers), so a policy changed before a request arrived is
the one it is decided under, as when each request read the version itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from app.rules.facts import Facts
from app.services.aggregates import Aggregator, Counted, Counting
from app.services.intake.batching import Batcher
from app.services.intake.lanes import (
    BATCH,
    Lane,
    Late,
    StoreBatched,
    not_outage,
    observe_batched,
    store_batches,
)
from app.services.policy.cache import PolicyCache
from app.store.counter_model import Changes, Reads, Totals
from app.store.pg_batch_store import StoreItem
from app.store.policy import policy_version

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class RedisBatches(StoreBatched):
    """Request events' lane and `Decisions` scope where the counters live in Redis (they
    take no connection: see the module docstring)."""

    lend: Counting
    """A held connection for a batch (or a decision's rare extra work)."""
    on_stored: Callable[[int, float], None] | None = None
    versions: Batcher[None, int] = field(init=False)
    stores: Batcher[StoreItem, int | None] = field(init=False)

    def __post_init__(self) -> None:
        self.versions = Batcher(
            self._read_version, limit=BATCH, name="verifyguard-versions", split=not_outage
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
        live = await self.versions.submit(None)
        if late.is_set():
            raise Late("the deadline passed before the policy version was read")

        async def count(changes: Changes, reads: Reads, cached: int) -> Totals | None:
            if cached != live:
                return None
            return await aggregator.backend.observe(None, changes, reads)

        return await observe_batched(aggregator, count, policies, facts, self.lend)

    async def finish(self, counted: Counted, *, allowed: bool, duplicate: bool) -> None:
        await counted.finish(None, allowed=allowed, duplicate=duplicate)

    async def close(self) -> None:
        await self.versions.close()
        await self.stores.close()

    async def _read_version(self, waiting: Sequence[None]) -> list[int]:
        async with self.lend() as conn:
            version = await policy_version(conn)
        return [version] * len(waiting)
