"""The overview served from memory when computing it is slow, so that its cost is bounded.

The unsettled hours are read from the verifications themselves (app/services/audit/stats.py),
so an attack of 100,000 attempts in the last hour makes every overview read 100,000 rows
twice (about a second of the database's time). An overview that took longer than `slow` to
compute is kept, per period, and served to every session of this worker; once it is older
than `fresh_for`, the next request starts one recomputation in the background and is served
the kept one meanwhile; past `max_age` (the recomputation failed or is stuck) a request
computes it again itself. So under attack a page answers in the time of a render, its
figures at most `fresh_for` plus one computation old (the page shows until when), and the
database computes one overview per period per `fresh_for` per worker however many consoles
are open. A quick overview (the usual case) is never kept: always exact.

Every read is still logged (or, for a poll, now and then) and masked for auditors: the kept
overview is read unmasked, and masked per request. The log entry is written first, in a short
transaction on the writer, and a computation refreshes the rollup in another; its reads run
on the runtime's reader: on SQLite the writer is the request path's one connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.audit.queries import AuditContext, record_apart
from app.services.audit.view import mask_deep
from app.services.tokens import Principal
from app.web.overview import PERIODS, Overview, overview, refresh_rollup

log = structlog.get_logger()
_KEEPER = Principal(token_id=None, name="console overview", role="auditor")


@dataclass(frozen=True, slots=True)
class Engines:
    """The runtime's engine (writes) and its reader (store/base.py `create_reader`)."""

    writer: AsyncEngine
    reader: AsyncEngine


@dataclass(frozen=True, slots=True)
class _Kept:
    overview: Overview  # unmasked
    at: float  # time.monotonic() when computed
    took: float  # seconds


@dataclass
class OverviewCache:
    slow: float = 0.25
    fresh_for: float = 15.0
    max_age: float = 120.0
    _kept: dict[str, _Kept] = field(default_factory=dict)
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def read(self, engines: Engines, *, ctx: AuditContext, period: str) -> Overview:
        """The overview, the read logged first on the writer; computed (the rollup made
        exact on the writer, the reads on the reader) or kept."""
        period = period if period in PERIODS else "24h"
        kept = self._kept.get(period)
        age = None if kept is None else time.monotonic() - kept.at
        quiet = await record_apart(engines.writer, ctx)
        if kept is None or age is None or kept.took < self.slow or age >= self.max_age:
            result = await self._compute_apart(engines, ctx=quiet, period=period)
        else:
            if age >= self.fresh_for:
                self._start(engines, period)
            result = kept.overview
        return result if ctx.reveal else _masked(result)

    async def refresh(self, engines: Engines, period: str) -> None:
        """Compute a period's overview on connections of its own (not logged): the rollup
        made exact on the writer (a short transaction, the usual case two statements), then
        the reads on the reader, on SQLite not the request path's one connection (under
        attack they read the last hour's attempts, about a second)."""
        ctx = AuditContext(_KEEPER, "GET", "/", {"period": period}, _now(), False, logged=False)
        await self._compute_apart(engines, ctx=ctx, period=period)

    async def _compute_apart(self, engines: Engines, *, ctx: AuditContext, period: str) -> Overview:
        await refresh_rollup(engines.writer, engines.reader, period=period, at=ctx.at)
        async with engines.reader.begin() as conn:
            return await self._compute(conn, ctx=ctx, period=period, roll=False)

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _compute(
        self, conn: AsyncConnection, *, ctx: AuditContext, period: str, roll: bool
    ) -> Overview:
        started = time.monotonic()
        revealed = dataclasses.replace(ctx, reveal=True)
        result = await overview(conn, ctx=revealed, period=period, roll=roll)
        took = time.monotonic() - started
        self._kept[period] = _Kept(result, started, took)
        return result

    def _start(self, engines: Engines, period: str) -> None:
        if period in self._running:
            return
        task = asyncio.create_task(self._refresh_quietly(engines, period))
        self._running[period] = task
        task.add_done_callback(lambda _: self._running.pop(period, None))

    async def _refresh_quietly(self, engines: Engines, period: str) -> None:
        try:
            await self.refresh(engines, period)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("console.overview_refresh_failed", period=period, exc_info=True)


def _masked(result: Overview) -> Overview:
    return dataclasses.replace(
        result, countries=mask_deep(result.countries), ranges=mask_deep(result.ranges)
    )


def _now() -> datetime:
    return datetime.now(UTC)
