"""One log line and the metrics for each callback: `decision.made` or `callback.received`."""

from __future__ import annotations

import time

import structlog
from prometheus_client import Counter

from app import logs
from app.metrics import Metrics, rule_label
from app.rules.decision import Decision

log = structlog.get_logger()


class Reporter:
    """Reports callbacks to one app's metrics; label children are resolved once, then reused."""

    def __init__(self, *, metrics: Metrics) -> None:
        self.metrics = metrics
        self._seconds = metrics.decision_seconds
        self._requests: dict[str, Counter] = {}  # by outcome
        self._decisions: dict[tuple[str, str, str | None, str], Counter] = {}

    def decision_made(
        self,
        verification_id: str,
        decision: Decision,
        started: float,
        *,
        outcome: str,
        action: str = "",
    ) -> None:
        """A request event answered; `outcome` is decided, degraded, fallback or duplicate.

        A duplicate is answered what was stored (`action`), not what was just decided.
        """
        seconds = time.perf_counter() - started
        self._seconds.observe(seconds)
        # The children looked up here, the helpers called only for a label set's first time.
        (self._requests.get(outcome) or self._request(outcome)).inc()
        if outcome != "duplicate":
            key = (decision.action, decision.reason, decision.rule, decision.mode)
            (self._decisions.get(key) or self._decision(key)).inc()
        logs.info(
            "decision.made",
            {
                "event_type": "request",
                "verification_id": verification_id,
                "action": action or decision.action,
                "reason": decision.reason,
                "rule": decision.rule,
                "mode": decision.mode,
                "outcome": outcome,
                "latency_ms": round(seconds * 1000, 2),
            },
        )

    def callback_received(
        self, event: str, verification_id: str | None, status: int, outcome: str, started: float
    ) -> None:
        """Any other callback (result, receipt, unknown or unparseable)."""
        self.metrics.callbacks.labels(event, outcome).inc()
        logs.info(
            "callback.received",
            {
                "event_type": event,
                "verification_id": verification_id,
                "status": status,
                "outcome": outcome,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    def rejected(self, cause: str, app_key: str | None) -> None:
        """A callback whose signature failed."""
        self.metrics.signature_failures.labels(cause).inc()
        log.warning("callback.rejected", cause=cause, app_key=app_key)

    def _request(self, outcome: str) -> Counter:
        child = self._requests[outcome] = self.metrics.callbacks.labels("request", outcome)
        return child

    def _decision(self, key: tuple[str, str, str | None, str]) -> Counter:
        action, reason, rule, mode = key
        child = self._decisions[key] = self.metrics.decisions.labels(
            action, reason, rule_label(rule), mode
        )
        return child
