"""How alerts and containments read on the console: plain rows for the template, numbers
masked for auditors (as the audit API masks them), time left counted from the request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.services.alerts.board import Board, Firing
from app.services.audit.view import mask_deep
from app.store.alert_rows import Containment, Notification

LIVE = ("active", "proposed")


def rows(board: Board, *, now: datetime, reveal: bool) -> dict[str, Any]:
    shown = {
        "firing": [_firing(f) for f in board.firing],
        "events": [
            {
                **_fields(e, "id kind alert key value metric observed threshold window at"),
                "contained": e.containment_id,
            }
            for e in board.events
        ],
        "notifications": [_notification(n) for n in board.notifications],
        "containments": [_containment(c, now) for c in board.containments],
    }
    return shown if reveal else mask_deep(shown)


def time_left(expires_at: datetime | None, now: datetime) -> str:
    """`2h 05m`, `4m 10s`; a dash when it does not run (proposed) or has run out."""
    if expires_at is None or expires_at <= now:
        return "\u2013"
    seconds = int((expires_at - now).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def _fields(row: object, names: str) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names.split()}


def _firing(f: Firing) -> dict[str, Any]:
    threshold = f.threshold if f.threshold is not None else f.alert.above or f.alert.below
    return {
        "name": f.alert.name,
        "metric": f.alert.metric,
        "key": f.alert.key,
        "value": f.value,
        "observed": f.observed,
        "threshold": threshold,
        "direction": "below" if f.alert.metric == "conversion" else "above",
        "window": f.alert.window,
        "since": f.since,
    }


def _notification(n: Notification) -> dict[str, Any]:
    status = "delivered" if n.delivered_at else "given up" if n.failed_at else "pending"
    return {
        **_fields(n, "id channel type attempts created_at next_attempt_at last_error"),
        "status": status,
        "at": n.delivered_at or n.failed_at,
        "value": n.payload.get("value"),
    }


def _containment(c: Containment, now: datetime) -> dict[str, Any]:
    return {
        **_fields(c, "id key value alert status created_at created_by expires_at"),
        **_fields(c, "approved_by lifted_at lifted_by extended_by duration_seconds"),
        "time_left": time_left(c.expires_at, now) if c.status == "active" else "\u2013",
        "live": c.status in LIVE,
    }
