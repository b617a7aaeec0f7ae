"""The process a backtest runs in: `python -m app.services.backtest.worker ID`, the database URL
in VERIFYGUARD_BACKTEST_DATABASE_URL. Its own process (at idle CPU priority) keeps the
replay's CPU away from the event loops that answer Sinch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from app.logs import configure_logging
from app.services.backtest.jobs import execute
from app.store.base import create_engine

DATABASE_URL = "VERIFYGUARD_BACKTEST_DATABASE_URL"
NICENESS = 19


def lower_priority(pid: int = 0) -> None:
    """Run only on CPU the request path leaves idle: SCHED_IDLE on Linux, else the lowest
    nice (nice 10 still took ~1/4 of the server's throughput on a saturated 2-core box).
    `pid`: another process (the launcher lowers its child as soon as it exists, so the
    child's interpreter start and imports, ~1 s of CPU, do not run at the server's
    priority); 0: this one."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError:
            pass
    if hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, NICENESS)


async def run(url: str, backtest_id: int) -> str:
    engine = create_engine(url, pool_size=2)
    try:
        return await execute(engine, backtest_id)
    finally:
        await engine.dispose()


def main() -> None:
    configure_logging(json_logs=True, level=os.environ.get("VERIFYGUARD_LOG_LEVEL", "INFO"))
    lower_priority()
    status = asyncio.run(run(os.environ[DATABASE_URL], int(sys.argv[1])))
    sys.exit(0 if status in ("done", "cancelled") else 1)


if __name__ == "__main__":
    main()
