"""The app's background jobs: one run every `interval` seconds, skipped while paused; their
work handed to the event loop in slices (`sliced`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

log = structlog.get_logger()
T = TypeVar("T")


async def every(
    interval: float,
    job: Callable[[], Awaitable[None]],
    *,
    paused: Callable[[], bool],
    failed: str,
) -> None:
    """Run `job` every `interval` seconds, unless `paused()` (the database is down); a failed
    run is logged as `failed` and the next one is tried. Runs until cancelled."""
    while True:
        await asyncio.sleep(interval)
        if paused():
            continue
        try:
            await job()
        except Exception:
            log.exception(failed)


# Items a background job handles between two turns of the event loop: the request path
# waits at most one slice (~1-3 ms of CPU for 1,000 baseline changes on a busy machine,
# so half that) behind such a job.
SLICE = 500


async def sliced(items: Sequence[T], size: int = SLICE) -> AsyncIterator[Sequence[T]]:
    """`items` in slices of at most `size`, the event loop turning between two of them."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]
