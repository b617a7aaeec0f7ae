"""Admission: a request event that cannot be decided in time is answered at once.

A decision waits for a counting connection (SQLite: the one writer; PostgreSQL: the held
pool), then holds it while it counts, decides and stores. Past capacity the wait grows
until requests reach their deadline still queueing: each then gets the fallback at the
deadline, having held its HTTP connection the whole time and made the requests behind it
later too, while the fallback's own work (the spool, its replay) took more of the writer.
That loop turned a burst into the fallback for everyone, real users included, and kept it
so after the burst had passed.

So a request is admitted only when the decisions already in flight leave it time: each
lane (connection) serves one decision at a time, each holds it for about `hold` (a moving
average of what holds took lately, under the load there is), and a newcomer would wait
for its share of those ahead of it. A request that would not make its budget gets the
fallback now, for the cost of answering; the rest are decided within their deadline; and
the moment the load drops, nothing is shed. Replay of the spool yields while decisions
queue (`pressed`), so the fallback's write-back never competes with live requests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.aggregates import Counting

HEADROOM = 0.8  # of the budget a queue may fill: the rest absorbs the estimate's error
ALPHA = 0.1  # weight of the newest sample in the moving averages (means: a queue's wait is
# a sum of holds, so their mean matters, not their spread)
QUIET_AFTER = 1.0  # seconds after the last shed request before replay may run again


class Admission:
    """Admits request events that can be decided within their budget; counts holds."""

    def __init__(self, *, lanes: int, hold: float = 0.002) -> None:
        self.lanes = lanes
        self.hold = hold
        self.overhead = 0.0  # a batch's fixed cost (group commit), paid by the current and the next
        self.in_flight = 0
        self._shed_at = float("-inf")

    def admit(self, budget: float) -> bool:
        """Whether a decision started now would finish within `budget` seconds; if so it
        is in flight until `release` (late work included)."""
        # A free lane means no queue to wait in: always worth trying (and the estimate is
        # renewed by it, so a stale, high one cannot shut the gate for good).
        rounds = self.in_flight // self.lanes + 1
        expected = rounds * self.hold + 2 * self.overhead
        if self.in_flight < self.lanes or expected <= budget * HEADROOM:
            self.in_flight += 1
            return True
        self._shed_at = time.monotonic()
        return False

    def release(self, _done: object = None) -> None:
        """An admitted decision's work ended (a done-callback of its task)."""
        self.in_flight -= 1

    @property
    def pressed(self) -> bool:
        """Decisions are queueing, or some were shed a moment ago: background work waits."""
        recently = time.monotonic() - self._shed_at < QUIET_AFTER
        return recently or self.in_flight >= self.lanes

    def timed(self, counting: Counting) -> Counting:
        """`counting` that reports how long each connection was held."""

        @asynccontextmanager
        async def scope() -> AsyncIterator[AsyncConnection]:
            started: float | None = None
            try:
                async with counting() as conn:
                    started = time.perf_counter()
                    yield conn
            finally:  # the hold includes the commit
                if started is not None:
                    self.record(1, time.perf_counter() - started)

        return scope

    def record(self, decisions: int, seconds: float, *, overhead: float = 0.0) -> None:
        """`decisions` held a lane for `seconds` one after another; a batch of them also
        cost `overhead` (the hops to and from the writer's thread: whatever its size)."""
        self.hold += ALPHA * (seconds / decisions - self.hold)
        self.overhead += ALPHA * (overhead - self.overhead)
