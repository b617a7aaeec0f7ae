"""The console warmed after start-up, in the background: what a worker's first console
request would otherwise pay (templates compiled, the overview's and the feed's statements
compiled and run once, the rollup brought up to date). Callbacks are served meanwhile: it
starts once the app is up, reads nothing the callback waits for, and is not logged."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog

from app.services.audit import queries as audit
from app.services.audit.queries import AuditContext, AuditFilter
from app.services.tokens import Principal
from app.web.console import Console
from app.web.overview import PERIODS
from app.web.overview_cache import Engines

log = structlog.get_logger()
DELAY = 1.0  # seconds after start-up: the first callbacks come first
_WARMER = Principal(token_id=None, name="console warm-up", role="auditor")


async def warm(console: Console, engines: Engines, *, delay: float = DELAY) -> None:
    """Never fails the app: a failed warm-up leaves the first request to do it."""
    try:
        await asyncio.sleep(delay)
        started = time.perf_counter()
        await asyncio.to_thread(compile_templates, console)
        await _read_once(console, engines)
        log.info("console.warmed", seconds=round(time.perf_counter() - started, 3))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("console.warm_up_failed", exc_info=True)
    finally:
        console.warmed.set()


def compile_templates(console: Console) -> None:
    env = console.templates.env
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)


async def _read_once(console: Console, engines: Engines) -> None:
    """Each overview period (kept if slow, see overview_cache.py) and the feed's first page,
    read through the reader (on SQLite not the request path's one connection)."""
    for period in PERIODS:
        await console.overview.refresh(engines, period)
    now = datetime.now(UTC)
    ctx = AuditContext(_WARMER, "GET", "/", {}, now, reveal=False, logged=False)
    async with engines.reader.begin() as conn:
        await audit.search(conn=conn, ctx=ctx, filters=AuditFilter(), cursor=None, limit=50)
