"""What is happening now, as the console shows it: the alerts firing (with the observation
that fired them), recent history, the outbox, containments and their counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerts import Alert
from app.services.policy.cache import PolicyCache
from app.store import alerts as store
from app.store.alert_rows import AlertEvent, Containment, Notification

HISTORY = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Firing:
    """One key of one alert that is firing now, and what was observed when it fired."""

    alert: Alert
    value: str
    since: datetime | None
    observed: float | None
    threshold: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Board:
    alerts: list[Alert]
    firing: list[Firing]
    events: list[AlertEvent]
    notifications: list[Notification]
    containments: list[Containment]


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    firing: int
    active: int
    proposed: int


async def board(conn: AsyncConnection, *, policies: PolicyCache, limit: int = HISTORY) -> Board:
    """The alerts page's contents; the policy as the request path has it compiled (a load of
    its own took the event loop for as long as its lists took to read: policy/held_lists.py)."""
    policy = (await policies.current(conn)).policy
    events = await store.event_rows(conn, alert=None, since=None, limit=limit)
    firing = [f for alert in policy.alerts for f in await _firing(conn, alert, events)]
    return Board(
        alerts=list(policy.alerts),
        firing=firing,
        events=events,
        notifications=await store.notification_rows(conn, limit=limit),
        containments=await store.containment_rows(conn, limit=limit),
    )


async def summary(conn: AsyncConnection) -> Summary:
    counts = await store.containment_counts(conn)
    return Summary(
        firing=await store.firing_count(conn),
        active=counts.get("active", 0),
        proposed=counts.get("proposed", 0),
    )


async def _firing(conn: AsyncConnection, alert: Alert, events: list[AlertEvent]) -> list[Firing]:
    states = await store.load_states(conn, alert.name)
    fired = {
        e.value: e for e in reversed(events) if e.alert == alert.name and e.kind == "alert.firing"
    }
    return [
        Firing(
            alert=alert,
            value=state.value,
            since=state.last_fired_at,
            observed=fired[state.value].observed if state.value in fired else None,
            threshold=fired[state.value].threshold if state.value in fired else None,
        )
        for state in states.values()
        if state.firing
    ]
