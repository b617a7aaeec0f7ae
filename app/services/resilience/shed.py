"""Reporting the request events admission shed: counted as they are answered, logged as one
line an interval.

Past capacity most answers are shed ones, and each one's CPU is taken from the decisions
admitted: a `decision.made` line apiece was ~27 % of a shed answer's instructions, its
metrics' label look-ups ~6 %. Each shed event stays in the spool and, once replayed, in
the audit (its verification stored with the fallback decision and its facts, decided_by
`fallback`), so the log keeps what an operator acts on: that the guard sheds, how many,
since when, what they were answered, and one id to follow into the audit. `decision.shed`
(warning) closes each interval of `INTERVAL` seconds in which any was shed.

Metrics: the fallback answers by cause and the decision time are updated per answer (they
are what shedding is watched by); the callbacks and decisions counters, and the spool's
writes and depth, get an interval's shed answers at its end, together (≤ INTERVAL behind),
or at `flush` (Intake.drain, shutdown).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable

import structlog

from app.metrics import Metrics, rule_label
from app.rules.decision import Decision
from app.services.resilience.entries import DECISION

log = structlog.get_logger()
INTERVAL = 1.0  # seconds a `decision.shed` line covers at most


class ShedReport:
    """Counts and logs shed answers of one app (its metrics); built by Outage."""

    def __init__(
        self, *, metrics: Metrics, spool_depth: Callable[[], int], interval: float = INTERVAL
    ) -> None:
        self._metrics = metrics
        self._spool_depth = spool_depth
        self._interval = interval
        self._fallbacks = metrics.fallbacks.labels("overload")
        self._seconds = metrics.decision_seconds
        self._count = 0
        self._spooled = 0
        self._first_id: str | None = None
        self._since = 0.0
        self._decision: Decision | None = None
        self._timer: asyncio.TimerHandle | None = None

    def answered(
        self, verification_id: str, decision: Decision, started: float, *, spooled: bool
    ) -> None:
        """A request event shed, answered `decision` (the fallback); its work began at
        `started` (perf_counter); `spooled`: its entry was written (by `shed`: its spool
        metrics are this report's)."""
        self._seconds.observe(time.perf_counter() - started)
        self._fallbacks.inc()
        if self._count and decision is not self._decision:
            self.flush()  # the fallback was changed (Outage builds it once): a line each
        self._count += 1
        self._spooled += spooled
        if self._count == 1:
            self._first_id, self._since, self._decision = verification_id, time.time(), decision
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Log and count what was shed since the last flush (at the interval's end, and when
        the app drains or stops), in a context of its own: the line is no one request's (no
        request id, whoever calls)."""
        contextvars.Context().run(self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        count, self._count = self._count, 0
        spooled, self._spooled = self._spooled, 0
        decision = self._decision
        if not count or decision is None:
            return
        if spooled:
            self._metrics.spool_writes.labels(DECISION).inc(spooled)
            self._metrics.spool_depth.set(self._spool_depth())
        self._metrics.callbacks.labels("request", "fallback").inc(count)
        self._metrics.decisions.labels(
            decision.action, decision.reason, rule_label(decision.rule), decision.mode
        ).inc(count)
        log.warning(
            "decision.shed",
            event_type="request",
            count=count,
            action=decision.action,
            cause="overload",
            seconds=round(time.time() - self._since, 3),
            first_verification_id=self._first_id,
        )
