"""One log line and the metrics for each callback: `decision.made` or `callback.received`."""

from __future__ import annotations

import time

import structlog

from app import logs
from app.metrics import Metrics, rule_label
from app.rules.decision import Decision

log = structlog.get_logger()


class Reporter:
    """Reports callbacks to one app's metrics."""

    def __init__(self, *, metrics: Metrics) -> None:
        self.metrics = metrics
        self._seconds = metrics.decision_seconds
        self._callbacks = metrics.callbacks
        self._decisions = metrics.decisions
        # A decision's label values by (action, reason, rule, mode): its rule as labelled.
        self._labels: dict[tuple[str, str, str | None, str], tuple[str, str, str, str]] = {}

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
        self._callbacks.inc(("request", outcome))
        if outcome != "duplicate":
            key = (decision.action, decision.reason, decision.rule, decision.mode)
            self._decisions.inc(self._labels.get(key) or self._labelled(key))
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
        self._callbacks.inc((event, outcome))
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

    def _labelled(self, key: tuple[str, str, str | None, str]) -> tuple[str, str, str, str]:
        action, reason, rule, mode = key
        labels = self._labels[key] = (action, reason, rule_label(rule), mode)
        return labels
