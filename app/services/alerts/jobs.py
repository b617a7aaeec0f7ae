"""The alert jobs a process runs, started and stopped by the app's lifespan:

- every worker: the containment watcher (the in-memory set the request path checks);
- the lease holder only: evaluation every few seconds and delivery of the outbox.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.metrics import Metrics
from app.services.alerts.delivery import Backoff, deliver_due
from app.services.alerts.evaluator import LEASE, Tick, evaluate_alerts
from app.services.alerts.live import LivePolicy
from app.services.alerts.watcher import ContainmentWatcher
from app.services.periodic import every
from app.services.policy.cache import PolicyCache
from app.settings import Settings
from app.store import alerts as alert_store
from app.store import lease

log = structlog.get_logger()
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertJobs:
    """Built once by the composition root; `clock` is injectable for tests."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        policies: PolicyCache,
        metrics: Metrics,
        clock: Clock = _utcnow,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._config = settings.alerts
        self._metrics = metrics
        self._clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.watcher = ContainmentWatcher(engine=engine, policies=policies, metrics=metrics)
        self._backoff = Backoff(
            self._config.retry_base_seconds,
            self._config.retry_max_seconds,
            self._config.max_attempts,
        )
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._led = False  # took the lease at least once: hand it back on stop
        self._paused: Callable[[], bool] = lambda: False
        # Evaluation and delivery read the policy through it: loaded once per version.
        self._live = LivePolicy(default_action=settings.default_action, policies=policies)

    @property
    def _ttl(self) -> timedelta:
        return timedelta(seconds=self._config.lease_seconds)

    async def evaluate_once(self, now: datetime | None = None) -> Tick:
        """One evaluation, if this process holds (or takes) the lease; each containment is
        committed as soon as it is made (see app.services.alerts.evaluator)."""
        now = now or self._clock()
        async with self._engine.connect() as conn:

            async def checkpoint() -> bool:
                await conn.commit()
                return await lease.claim(
                    conn, name=LEASE, holder=self.holder, now=now, ttl=self._ttl
                )

            tick = await evaluate_alerts(
                conn,
                settings=self._settings,
                holder=self.holder,
                now=now,
                lease_ttl=self._ttl,
                checkpoint=checkpoint,
                live=self._live,
            )
            await conn.commit()
        if tick.leader:
            self._led = True
            self._metrics.alerts_firing.set(tick.firing)
            self._metrics.alert_transitions.labels("alert.firing").inc(tick.fired)
            self._metrics.alert_transitions.labels("alert.resolved").inc(tick.resolved)
        return tick

    async def deliver_once(self, now: datetime | None = None) -> int:
        """Deliver the due notifications, if this process holds the lease. With nothing
        due (every second but a few) it only reads: no lease claim, so no write and no
        commit waiting on the WAL beside the callbacks' commits (evaluation renews the
        lease)."""
        now = now or self._clock()
        async with self._engine.connect() as conn:
            if not await alert_store.any_due(conn, now):
                return 0
        async with self._engine.begin() as conn:
            if not await lease.claim(conn, name=LEASE, holder=self.holder, now=now, ttl=self._ttl):
                return 0
            self._led = True
            if not await alert_store.any_due(conn, now):
                return 0
            policy = await self._live.read(conn)
        return await deliver_due(
            self._engine,
            self._http(),
            channels={channel.name: channel for channel in policy.channels},
            now=now,
            backoff=self._backoff,
            metrics=self._metrics,
        )

    async def refresh_once(self, now: datetime | None = None) -> bool:
        return await self.watcher.refresh(now or self._clock())

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = self._config.notification_timeout_seconds
            self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        return self._client

    async def start(self, *, paused: Callable[[], bool]) -> None:
        """Load the containments now; then watch, evaluate and deliver in the background."""
        self._paused = paused
        await self.refresh_once()
        jobs: list[tuple[float, Callable[[], Awaitable[None]], str]] = [
            (self._config.containment_poll_seconds, self._watch, "containments")
        ]
        if self._config.enabled:  # off: this process never evaluates nor delivers
            jobs.append((self._config.evaluate_seconds, self._evaluate, "evaluate"))
            jobs.append((self._config.delivery_seconds, self._deliver, "deliver"))
        for interval, job, name in jobs:
            work = every(interval, job, paused=paused, failed=f"job.alerts.{name}.failed")
            self._tasks.append(asyncio.create_task(work, name=f"verifyguard-alerts-{name}"))

    async def _watch(self) -> None:
        await self.refresh_once()

    async def _evaluate(self) -> None:
        await self.evaluate_once()

    async def _deliver(self) -> None:
        await self.deliver_once()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if not self._led or self._paused():
            return
        try:
            async with self._engine.begin() as conn:
                await lease.release(conn, name=LEASE, holder=self.holder)
        except Exception:
            log.warning("job.alerts.release_failed", holder=self.holder)
