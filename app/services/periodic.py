"""The app's background jobs: one run every `interval` seconds, skipped while paused, and
waiting out a burst of request events (`busy`: store/turns.py); their work handed to the
event loop in slices (`sliced`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from app.store.turns import Gate, turn, yielding

log = structlog.get_logger()
T = TypeVar("T")
# Seconds a run waits for a burst to pass before it starts (no snapshot held yet), at most:
# the simulator's bursts last 2-4 s; under a load that does not let up the job runs this late.
BEFORE = 10.0
# Seconds a run waits in all, at most, at its turns once started (`turn`: taken only where
# it holds no snapshot, as the baseline refresh's apply; store/turns.py).
WITHIN = 3.0


async def every(
    interval: float,
    job: Callable[[], Awaitable[None]],
    *,
    paused: Callable[[], bool],
    failed: str,
    busy: Callable[[], bool] | None = None,
) -> None:
    """Run `job` every `interval` seconds, unless `paused()` (the database is down); a failed
    run is logged as `failed` and the next one is tried. Runs until cancelled.

    With `busy` (the request path's: services/admission.py `Admission.busy`), a run first
    waits while it says so (BEFORE seconds at most), and its turns wait too (WITHIN in all)."""
    while True:
        await asyncio.sleep(interval)
        if paused():
            continue
        try:
            if busy is None:
                await job()
                continue
            await Gate(busy, BEFORE).wait()
            if paused():
                continue
            with yielding(Gate(busy, WITHIN)):
                await job()
        except Exception:
            log.exception(failed)


# Items a background job handles between two turns of the event loop: the request path
# waits at most one slice (~1-3 ms of CPU for 1,000 baseline changes on a busy machine,
# so half that) behind such a job.
SLICE = 500


async def sliced(items: Sequence[T], size: int = SLICE) -> AsyncIterator[Sequence[T]]:
    """`items` in slices of at most `size`, the event loop turning between two of them (and
    waiting while the request path is busy, inside `every`'s runs: store/turns.py)."""
    for start in range(0, len(items), size):
        if start:
            await turn()
        yield items[start : start + size]
