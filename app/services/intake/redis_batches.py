"""Group commit on PostgreSQL with the counters in Redis.

Request events that arrive together are counted through the Redis backend (whose script
runs carry the calls of concurrent callers together, each atomic: a burst is still cut at
exactly its limit), and share one storing statement with one commit (lanes.store_batches).
A denied attempt's settle (or a redelivery's forgetting) goes to Redis after its store
batch committed, and its answer waits for it; an allowed one's writes nothing (its hold is
its allowed count already: counter_model) and is not made at all.

Each is counted under the policy compiled last only if Redis holds that policy's version,
checked by the counting script itself (services/policy/published.py keeps the key: raised
by every change before it is answered), so a policy changed before a request arrived is
the one it is decided under, with no read of the version from PostgreSQL. A request that
finds the key at another version is counted under the policy at the version kept: the
request events that found it moved share one load of it, on one connection (before, each
borrowed a connection to read the version, and held it while the load ran). One that finds
no key kept, or the key moved again meanwhile, reads the version on a connection of its
own, raises the key to it, and is counted under that version's policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from app.rules.facts import Facts
from app.services.aggregates import Aggregator, Counted, Counting
from app.services.intake.batching import Batcher
from app.services.intake.lanes import (
    Lane,
    Late,
    StoreBatched,
    store_batches,
)
from app.services.policy.cache import PolicyCache
from app.services.policy.published import PublishedVersion
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
    published: PublishedVersion
    on_stored: Callable[[int, float], None] | None = None
    on_missed: Callable[[], None] | None = None
    """Called for each request event counted on the slow path (the version read)."""
    stores: Batcher[StoreItem, int | None] = field(init=False)

    def __post_init__(self) -> None:
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
        async def count(changes: Changes, reads: Reads, cached: int) -> Totals | None:
            return await aggregator.backend.observe(None, changes, reads, version=cached)

        counted = await aggregator.observe_through(count, policies, facts)
        if counted is not None:
            return counted
        if self.on_missed is not None:
            self.on_missed()
        kept = await self.published.key.get()
        cached = policies.loaded
        if kept is not None and (cached is None or cached.version != kept):
            # A change moved it: the policy at the version kept (a committed one), loaded
            # once for every request event that found it moved, on one connection.
            loaded = await policies.at(kept, self.lend)
            if late.is_set():
                raise Late("the deadline passed while the policy was loaded")
            if loaded is not None:  # None: the database is not at the version kept
                counted = await aggregator.observe_through(count, policies, facts)
                if counted is not None:
                    return counted
        async with self.lend() as conn:  # none kept, or it moved again: the database's
            live = await policy_version(conn)
            if late.is_set():
                raise Late("the deadline passed before the policy version was read")
            await self.published.key.raise_to(live)
            return await aggregator.observe_live(conn, policies, facts, version=live)

    async def finish(self, counted: Counted, *, allowed: bool, duplicate: bool) -> None:
        await counted.finish(None, allowed=allowed, duplicate=duplicate)

    async def close(self) -> None:
        await self.stores.close()
