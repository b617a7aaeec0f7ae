"""The counter model in this process's memory: for deciding while the database is away.

It only knows the attempts this process saw during the outage, and is emptied when the
database returns. Buckets older than the retention are dropped as new ones are written.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from app.store.counter_model import (
    READS,
    BucketClock,
    Capabilities,
    Changes,
    Reads,
    Totals,
    WindowQuery,
)


class MemoryCounters:
    """Rows of one process, by key then bucket."""

    capabilities = Capabilities()

    def __init__(self, bucket_seconds: int, retention_seconds: int) -> None:
        self.clock = BucketClock(bucket_seconds)
        self._retention = retention_seconds
        self._rows: dict[str, dict[int, defaultdict[str, int]]] = defaultdict(dict)

    def clear(self) -> None:
        self._rows.clear()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.clear()

    async def apply(self, conn: Any, changes: Changes) -> None:
        for change in changes:
            oldest = change.bucket - self._retention
            for key in change.keys:
                buckets = self._rows[key]
                row = buckets.setdefault(change.bucket, defaultdict(int))
                for name, delta in change.deltas.items():
                    row[name] += delta
                for stale in [b for b in buckets if b < oldest]:
                    del buckets[stale]

    async def observe(
        self, conn: Any, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        assert version is None, "memory counters cannot check the policy version"
        await self.apply(conn, changes)
        return await self.read(conn, reads)

    async def read(self, conn: Any, reads: Reads) -> Totals:
        queries, now = reads.queries, reads.now
        current = self.clock.bucket(now)
        out: dict[WindowQuery, int] = {}
        for q in queries:
            oldest = self.clock.oldest(now, q.window_seconds)
            buckets = self._rows.get(q.key, {})
            out[q] = sum(
                row[c]
                for b, row in buckets.items()
                if oldest <= b <= current
                for c in READS[q.measure]
            )
        return out
