"""Every worker's view of the active containments: a cheap poll (a count and the latest
change of the containments table) reloads them when they change, and hands them to the
policy cache, so the request path checks them in memory without a statement of its own."""

from __future__ import annotations

import os
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.metrics import Metrics
from app.rules.containment import Block, compile_containments
from app.services.policy.cache import PolicyCache
from app.store import alerts as store

log = structlog.get_logger()


class ContainmentWatcher:
    def __init__(self, *, engine: AsyncEngine, policies: PolicyCache, metrics: Metrics) -> None:
        self._engine = engine
        self._policies = policies
        self._metrics = metrics
        self._seen: tuple[int, datetime | None] | None = None
        self._next_expiry: datetime | None = None

    async def refresh(self, now: datetime) -> bool:
        """Reload the active containments if they changed (or one expired); True if reloaded."""
        async with self._engine.connect() as conn:
            seen = await store.containment_signature(conn)
            expired = self._next_expiry is not None and self._next_expiry <= now
            if seen == self._seen and not expired:
                return False
            rows = await store.active_containments(conn, now)
        blocks = [Block(r.id, r.alert, r.key, r.value, r.expires_at) for r in rows]
        self._policies.contain(compile_containments(blocks))
        self._seen = seen
        expiries = [b.expires_at for b in blocks if b.expires_at is not None]
        self._next_expiry = min(expiries) if expiries else None
        self._metrics.containments_active.set(len(blocks))
        # When each process put each containment in force (the newest id it holds).
        newest = max((b.id for b in blocks), default=None)
        log.info("containments.loaded", active=len(blocks), newest=newest, pid=os.getpid())
        return True
