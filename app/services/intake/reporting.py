"""One log line and the metrics for each callback: `decision.made` or `callback.received`."""

from __future__ import annotations

import time
from typing import Any

import structlog

from app import metrics
from app.rules.decision import Decision

log = structlog.get_logger()


def decision_made(
    verification_id: str, decision: Decision, started: float, *, outcome: str, action: str = ""
) -> None:
    """A request event answered; `outcome` is decided, degraded, fallback or duplicate.

    A duplicate is answered what was stored (`action`), not what was just decided.
    """
    seconds = time.perf_counter() - started
    metrics.DECISION_SECONDS.observe(seconds)
    metrics.CALLBACKS.labels("request", outcome).inc()
    if outcome != "duplicate":
        rule = metrics.rule_label(decision.rule)
        metrics.DECISIONS.labels(decision.action, decision.reason, rule, decision.mode).inc()
    log.info(
        "decision.made",
        event_type="request",
        verification_id=verification_id,
        action=action or decision.action,
        reason=decision.reason,
        rule=decision.rule,
        mode=decision.mode,
        outcome=outcome,
        latency_ms=round(seconds * 1000, 2),
    )


def callback_received(
    event: str, verification_id: str | None, status: int, outcome: str, started: float
) -> None:
    """Any other callback (result, receipt, unknown or unparseable)."""
    metrics.CALLBACKS.labels(event, outcome).inc()
    fields: dict[str, Any] = {"latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    log.info(
        "callback.received",
        event_type=event,
        verification_id=verification_id,
        status=status,
        outcome=outcome,
        **fields,
    )
