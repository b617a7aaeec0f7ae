"""A containment made because a key was dead lifts itself once the key converts as real users
do: its premise is gone (real users' attempts, allowed before the block, came back verified).
One verification is not enough: pumping gets ~1 % verified (in the simulator's seed 3 one
pumped EG attempt of the ~35 let through verified, and lifted the block when it was).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerts import Alert
from app.rules.durations import parse_duration
from app.rules.model import Policy
from app.services.alerts import dead
from app.services.alerts.outbox import containment_changed
from app.store import alerts as store
from app.store.alert_rows import Containment

log = structlog.get_logger()


def dead_period(alert: Alert, row: Containment) -> int | None:
    """Seconds the key was judged dead over, the containment's premise (None: another one)."""
    if alert.dead_seconds is not None:
        return alert.dead_seconds
    contain = alert.contain
    if contain is None or contain.active_if_dead_over is None or row.approved_by:
        return None
    return parse_duration(contain.active_if_dead_over)


async def lift_revived(conn: AsyncConnection, policy: Policy, now: datetime) -> int:
    """Lift every active containment whose key, judged dead, is alive over the same period
    now (app.services.alerts.dead); notify as a lift. Returns how many were lifted."""
    alerts = {alert.name: alert for alert in policy.alerts}
    lifted = 0
    for row in await store.active_containments(conn, now):
        alert = alerts.get(row.alert or "")
        period = None if alert is None else dead_period(alert, row)
        if alert is None or period is None or not await _alive(conn, alert, row, period, now):
            continue
        by = f"alert:{alert.name} (verified since)"
        await store.update_containment(
            conn, row.id, status="lifted", lifted_at=now, lifted_by=by, updated_at=now
        )
        changed = replace(row, status="lifted", lifted_at=now, lifted_by=by, updated_at=now)
        channels = list(alert.notify)
        await containment_changed(conn, "containment.lifted", changed, channels=channels, now=now)
        log.warning("containment.revived", id=row.id, key=row.key, value=row.value)
        lifted += 1
    return lifted


async def _alive(
    conn: AsyncConnection, alert: Alert, row: Containment, period: int, now: datetime
) -> bool:
    since = row.created_at - timedelta(seconds=period)
    return bool(await dead.alive(conn, alert, [row.value], since=since, until=now))
