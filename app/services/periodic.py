"""The app's background jobs: one run every `interval` seconds, skipped while paused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger()


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
