"""The counter model in SQL: one `counters` row per counter key and time bucket.

On PostgreSQL the counting connection is in autocommit mode and each call is one statement
(pg_counters.py); on SQLite it is the request's transaction, which serialises writers, and
changes are upserts followed by one read. Either way the upsert returns or precedes the
read in one atomic step, so concurrent attempts on one key see distinct totals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import pg_counters
from app.store import policy as policy_store
from app.store.counter_model import (
    READS,
    VALUE_COLUMNS,
    BucketClock,
    Capabilities,
    Changes,
    CounterDeltas,
    Reads,
    Totals,
    WindowQuery,
)
from app.store.pg_counters import PgCounters
from app.store.pg_windows import older_values
from app.store.sqlite_windows import summed, window_parameters, windows_statement
from app.store.tables import counters
from app.store.thread_connection import batch_connection, run_beside
from app.store.upsert import cached, upsert

CARRIED = "counters"
"""What a batch's connection carries for the next counter statement (`settle`)."""


class SqlCounters:
    """Counters kept in the main database, beside the policy and the decisions."""

    capabilities = Capabilities(checks_policy_version=True, joins_store=True)

    def __init__(self, bucket_seconds: int) -> None:
        self.clock = BucketClock(bucket_seconds)
        self._pg = PgCounters(self.clock)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def apply(self, conn: AsyncConnection, changes: Changes) -> None:
        await apply(conn, changes)

    async def observe(
        self, conn: AsyncConnection, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        """On PostgreSQL one statement (which reads the version itself); on SQLite the
        version read, the upserts and the read share the request's transaction."""
        if conn.dialect.name == "postgresql" and changes:
            return await self._pg.observe(conn, changes, reads, version=version)
        if version is not None and await policy_store.policy_version(conn) != version:
            return None
        await apply(conn, changes)
        return await self.read(conn, reads)

    async def read(self, conn: AsyncConnection, reads: Reads) -> Totals:
        queries, now = reads.queries, reads.now
        if not queries:
            return {}
        if conn.dialect.name == "postgresql":
            return await self._pg.read(conn, reads)
        windows = sorted({q.window_seconds for q in queries})
        keys = sorted({q.key for q in queries})
        stmt = cached(
            ("hour-window-parts", tuple(windows), len(keys)),
            lambda: windows_statement(windows, len(keys)),
        )
        current = self.clock.bucket(now)
        bounds = older_values(self.clock, now, current, set(windows))
        params = window_parameters(bounds, windows)
        params.update({f"key_{i}": key for i, key in enumerate(keys)})
        params["current"] = current
        rows = summed(await run_beside(conn, stmt, params))
        at = {w: 1 + i * len(VALUE_COLUMNS) for i, w in enumerate(windows)}  # the layout
        return {q: _sum(q, rows.get(q.key), at[q.window_seconds]) for q in queries}


async def apply(conn: AsyncConnection, changes: Sequence[CounterDeltas]) -> None:
    """Add each change to its keys' rows (the store applies a decision's settle with it).

    On SQLite all of them in one statement, a row per key with its own deltas: SQLite
    inserts the rows one after another, so a key listed twice adds both (an attempt's
    changes had been a statement each, two of a decision's nine). In a group commit's
    batch the statement also carries the changes earlier decisions left for it (`settle`)."""
    if conn.dialect.name == "postgresql":
        await pg_counters.apply(conn, changes)
        return
    batch = batch_connection(conn)
    if batch is not None:
        changes = [*batch.take(CARRIED), *changes]
    rows: list[tuple[str, int, Mapping[str, int]]] = []
    written: set[str] = set()
    for change in changes:
        changed = {name for name in VALUE_COLUMNS if change.deltas.get(name)}
        if change.keys and changed:
            written |= changed
            rows += [(key, change.bucket, change.deltas) for key in change.keys]
    if not rows:
        return
    columns = tuple(name for name in VALUE_COLUMNS if name in written)
    stmt = cached(("counter-rows", len(rows), columns), lambda: _upsert(len(rows), columns))
    params: dict[str, Any] = {}
    for i, (key, bucket, deltas) in enumerate(rows):
        suffix = "" if len(rows) == 1 else f"_{i}"
        params[f"key{suffix}"], params[f"bucket{suffix}"] = key, bucket
        params.update({f"{name}{suffix}": deltas.get(name, 0) for name in VALUE_COLUMNS})
    await run_beside(conn, stmt, params)  # the deferred writes never touch counters


async def settle(conn: AsyncConnection, change: CounterDeltas) -> None:
    """A decided attempt's settle (store/inbox.py). In a group commit's batch it is carried
    into the batch's next counter statement — the next decision's count, or its window
    read — instead of a statement of its own: every read of the counters in the batch comes
    after it either way (`SqlCounters.read`), so each decision sees the same totals."""
    batch = batch_connection(conn)
    if batch is None:
        await apply(conn, [change])
    else:
        batch.carry(CARRIED, change, apply)


def _upsert(count: int, changed: tuple[str, ...]) -> Any:
    """INSERT of `count` rows (key, bucket, deltas), adding the deltas of `changed` on
    conflict."""
    return upsert(
        counters,
        ("key", "bucket", *VALUE_COLUMNS),
        conflict=["key", "bucket"],
        update={name: f"counters.{name} + excluded.{name}" for name in changed},
        rows=count,
    )


def _sum(query: WindowQuery, row: Any, at: int) -> int:
    """The query's total in `row`, whose window's sums start at column `at`."""
    if row is None:
        return 0
    return sum(int(row[at + _COLUMN[c]] or 0) for c in READS[query.measure])


_COLUMN = {name: i for i, name in enumerate(VALUE_COLUMNS)}
