"""Backtests as the app runs them: started by a request, replayed in a child process of this
worker (never in the request, never on its event loop), stopped with the app."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.backtest import jobs
from app.services.backtest.jobs import Defaults
from app.services.backtest.worker import DATABASE_URL, lower_priority
from app.store import backtests as store
from app.store.backtests import BacktestRecord

log = structlog.get_logger()
STDERR_TAIL = 2000
RENEW_SECONDS = 10.0


class Backtests:
    """Starts backtests and supervises the processes this app started for them."""

    def __init__(self, *, engine: AsyncEngine, database_url: str, defaults: Defaults) -> None:
        self._engine = engine
        self._url = database_url
        self.defaults = defaults
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        *,
        document: Any,
        since: datetime,
        until: datetime | None,
        by: str | None,
        now: datetime,
    ) -> BacktestRecord:
        record = await jobs.start(
            self._engine,
            document=document,
            since=since,
            until=until,
            by=by,
            now=now,
            defaults=self.defaults,
        )
        task = asyncio.create_task(self._supervise(record.id), name=f"backtest-{record.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    async def _supervise(self, backtest_id: int) -> None:
        """Run the child; if it dies without recording an end, record the failure."""
        env = {**os.environ, DATABASE_URL: self._url}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.services.backtest.worker",
                str(backtest_id),
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            lower_priority(process.pid)  # before its imports, not once they are done
            self._running[backtest_id] = process
            renewing = asyncio.create_task(self._renew(backtest_id))
            try:
                _, stderr = await process.communicate()
            finally:
                renewing.cancel()
        except Exception as exc:  # recorded on the job, which must not stay running
            await self._failed(backtest_id, f"could not start the backtest process: {exc!r}")
            return
        finally:
            self._running.pop(backtest_id, None)
        if process.returncode != 0:
            tail = stderr.decode(errors="replace")[-STDERR_TAIL:]
            log.warning("job.crashed", job="backtest", id=backtest_id, rc=process.returncode)
            await self._failed(
                backtest_id, f"the backtest process exited {process.returncode}: {tail}"
            )

    async def _renew(self, backtest_id: int) -> None:
        """Hold the lease while the child lives (starting it may take long on a loaded
        machine); it is lost only when this worker dies too."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            async with self._engine.begin() as conn:
                await store.renew(conn, backtest_id, lease_until=datetime.now(UTC) + jobs.LEASE)

    async def _failed(self, backtest_id: int, error: str) -> None:
        async with self._engine.begin() as conn:
            now = datetime.now(UTC)
            await store.finish(conn, backtest_id, status="failed", now=now, error=error)

    async def close(self) -> None:
        """Stop the processes this app started (their runs are recorded as failed)."""
        for process in list(self._running.values()):
            if process.returncode is None:
                process.terminate()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
