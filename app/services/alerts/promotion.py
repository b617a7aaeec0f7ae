"""A containment proposed for review, of an alert that contains at once where the key is dead
(`active_if_dead_over`), goes into force as soon as the key is judged dead while its alert
still fires for it. Proposed at the first firing, it otherwise waited for an admin even once
deadness could be judged: on a fresh database nothing is judged dead until results flow
(~35 s in), so distributed pumping fired, was proposed at 5-25 s and was never contained
(simulator seed 4, PH) unless another alert fired for it later.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.model import Policy
from app.services.alerts import dead
from app.services.alerts.outbox import containment_changed
from app.store import alerts as store

log = structlog.get_logger()
ACTIVATED = "containment.activated"


async def activate_dead(conn: AsyncConnection, policy: Policy, now: datetime) -> int:
    """Put in force every such proposed containment whose key is dead now; notify each as
    `containment.activated`. Returns how many."""
    alerts = {alert.name: alert for alert in policy.alerts}
    activated = 0
    for row in await store.containment_rows(conn, status="proposed", limit=1000):
        alert = alerts.get(row.alert or "")
        if alert is None or alert.contain is None or alert.contain.active_if_dead_over is None:
            continue
        state = (await store.load_states(conn, alert.name)).get(row.value)
        if state is None or not state.firing or await dead.for_review(conn, alert, row.value, now):
            continue
        expires = now + timedelta(seconds=row.duration_seconds)
        await store.update_containment(
            conn, row.id, status="active", expires_at=expires, updated_at=now
        )
        changed = replace(row, status="active", expires_at=expires, updated_at=now)
        await containment_changed(conn, ACTIVATED, changed, channels=list(alert.notify), now=now)
        log.warning("containment.activated", id=row.id, key=row.key, value=row.value)
        activated += 1
    return activated
