"""Background work's turns of the event loop, and its waits while the request path is busy.

A background job (the baseline refresh, the stats rollup, retention) shares the event loop
with the request path, and on SQLite the process's cores and its GIL too: the refresh's
reads run on the reader's thread, its row building holding the GIL while the loop and the
writer's thread wait for it. Between two slices of its work it takes a `turn`: the loop
runs whatever fell due meanwhile. And while its runner has set a `Gate` (services/
periodic.py `every`), a turn also waits while the gate says the request path is busy (a
burst: services/admission.py `Admission.busy`), for at most what is left of the gate's
budget: the job finishes after the burst instead of taking its CPU from it.

Measured (docs/operations.md, "Background work waits out a burst"): on the default SQLite
store, `simulate --scenario range-pumping --rate 300` had the refresh that ran every 30 s
coincide with a burst, and the fallback answers of those runs were its.

Take a turn only where no snapshot is held: a wait there would hold it. The refresh's
reads (store/changes.py) yield with a plain `asyncio.sleep(0)`. Waiting there too held its
snapshot seconds longer: on PostgreSQL past capacity 0.7-1.0 % of the answers then came
past the deadline in 3 of 4 runs (at most 0.4 % without), and on SQLite the WAL piled up
behind it. The budget bounds how late the work is under a load that does not let up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PAUSE = 0.02  # seconds between two looks at whether the request path is still busy


class Gate:
    """Waits while `busy()`, `budget` seconds in all at most (over every `wait`)."""

    def __init__(
        self,
        busy: Callable[[], bool],
        budget: float,
        *,
        pause: float = PAUSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._busy = busy
        self._pause = pause
        self._clock = clock
        self.budget = budget
        self.waited = 0.0  # seconds waited so far

    async def wait(self) -> None:
        """Return once the request path is not busy, or the budget is spent."""
        while self.budget > 0.0 and self._busy():
            started = self._clock()
            await asyncio.sleep(min(self._pause, self.budget))
            spent = self._clock() - started
            self.budget -= spent
            self.waited += spent


_gate: ContextVar[Gate | None] = ContextVar("verifyguard_background_gate", default=None)


@contextmanager
def yielding(gate: Gate) -> Iterator[Gate]:
    """For the block (and the tasks it starts), every `turn` waits at `gate`."""
    token = _gate.set(gate)
    try:
        yield gate
    finally:
        _gate.reset(token)


async def turn() -> None:
    """A turn of the event loop between two slices of background work; inside `yielding`,
    also the gate's wait while the request path is busy."""
    await asyncio.sleep(0)
    gate = _gate.get()
    if gate is not None:
        await gate.wait()
