"""A containment made because nobody verified in a key lifts itself once the key converts as
real users do: its premise is gone (real users' attempts, allowed before the block, came back
verified). One verification is not enough: pumping gets ~1 % verified (in the simulator's
seed 3 one pumped EG attempt of the ~35 let through verified, and lifted the block).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerts import Alert
from app.rules.durations import parse_duration
from app.rules.model import Policy
from app.services.alerts import messages
from app.services.alerts.outbox import enqueue
from app.store import alert_metrics
from app.store import alerts as store
from app.store.alert_rows import Containment

log = structlog.get_logger()
# Real users verify ~85 % of their attempts, pumping ~1 %; the starter policy holds a
# 1,000-number block converting below 20 % as well.
ALIVE_CONVERSION = 0.2


def dead_period(alert: Alert, row: Containment) -> int | None:
    """Seconds with nobody verified that the containment stood on (None: another premise)."""
    if alert.no_verified_seconds is not None:
        return alert.no_verified_seconds
    contain = alert.contain
    if contain is None or contain.active_if_no_verified_in is None or row.approved_by:
        return None
    return parse_duration(contain.active_if_no_verified_in)


async def lift_revived(conn: AsyncConnection, policy: Policy, now: datetime) -> int:
    """Lift every active containment whose key, judged dead, now converts at ALIVE_CONVERSION
    or better over the same period; notify as a lift. Returns how many were lifted."""
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
        body = messages.payload(
            "containment.lifted",
            alert=alert.name,
            key=row.key,
            value=row.value,
            at=now,
            containment=changed,
        )
        await enqueue(conn, channels=list(alert.notify), body=body, now=now)
        log.warning("containment.revived", id=row.id, key=row.key, value=row.value)
        lifted += 1
    return lifted


async def _alive(
    conn: AsyncConnection, alert: Alert, row: Containment, period: int, now: datetime
) -> bool:
    measured = await alert_metrics.conversion_of(
        conn,
        key=row.key,
        digits=alert.digits,
        value=row.value,
        since=row.created_at - timedelta(seconds=period),
        until=now,
    )
    return measured.total > 0 and measured.total >= ALIVE_CONVERSION * measured.attempts
