"""The console warmed after start-up, in the background: what a worker's first console
request would otherwise pay (templates compiled, the overview's and the feed's statements
compiled and run once, the rollup brought up to date). Callbacks are served meanwhile: it
starts once the app is up, reads nothing the callback waits for, and is not logged."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.audit import queries as audit
from app.services.audit.queries import AuditContext, AuditFilter
from app.services.tokens import Principal
from app.web.console import Console
from app.web.overview import PERIODS

log = structlog.get_logger()
DELAY = 1.0  # seconds after start-up: the first callbacks come first
_WARMER = Principal(token_id=None, name="console warm-up", role="auditor")


async def warm(console: Console, engine: AsyncEngine, *, delay: float = DELAY) -> None:
    """Never fails the app: a failed warm-up leaves the first request to do it."""
    try:
        await asyncio.sleep(delay)
        started = time.perf_counter()
        await asyncio.to_thread(compile_templates, console)
        await _read_once(console, engine)
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


async def _read_once(console: Console, engine: AsyncEngine) -> None:
    """Each overview period (kept if slow, see overview_cache.py) and the feed's first page."""
    for period in PERIODS:
        await console.overview.refresh(engine, period)
    now = datetime.now(UTC)
    ctx = AuditContext(_WARMER, "GET", "/", {}, now, reveal=False, logged=False)
    async with engine.begin() as conn:
        await audit.search(conn=conn, ctx=ctx, filters=AuditFilter(), cursor=None, limit=50)
