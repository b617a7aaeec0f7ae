"""One evaluation of every alert: observe, decide transitions (app.rules.alerting), and store
the events, containments and notifications they cause.

Each transaction opens by claiming the `alerts` lease, so across processes and hosts one
evaluator at a time does this; the others find the lease taken and skip. A containment is
made durable as soon as it is stored (with its alert's state, event and notices), in its own
transaction: the workers put it in force without waiting for the other alerts' observations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerting import AlertState, Observation, Transition, evaluate_alert
from app.rules.alerts import Alert
from app.rules.lists import compile_list
from app.rules.model import Policy
from app.services.alerts import dead, messages
from app.services.alerts.live import LivePolicy
from app.services.alerts.outbox import channels_of, containment_changed, enqueue
from app.services.alerts.promotion import activate_dead
from app.services.alerts.revival import lift_revived
from app.settings import Settings
from app.store import alert_metrics, lease
from app.store import alerts as store
from app.store.alert_rows import AlertEvent, AlertStateRecord, Containment

log = structlog.get_logger()
LEASE = "alerts"
DAY = timedelta(days=1)
# Commits what the evaluation wrote so far and opens the next transaction; False when the lease
# was lost meanwhile (the evaluation stops: another process evaluates now).
Checkpoint = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Tick:
    """What one evaluation did (all zero when this process did not hold the lease)."""

    leader: bool
    fired: int = 0
    resolved: int = 0
    containments: int = 0
    firing: int = 0

    @property
    def transitions(self) -> int:
        return self.fired + self.resolved


async def evaluate_alerts(
    conn: AsyncConnection,
    *,
    settings: Settings,
    holder: str,
    now: datetime,
    lease_ttl: timedelta,
    checkpoint: Checkpoint,
    live: LivePolicy | None = None,
) -> Tick:
    """Claim the lease, then evaluate every alert at `now`; skip if another process holds it.
    `checkpoint` is called after each containment (see Checkpoint); `live` keeps the policy
    loaded between evaluations (services/alerts/live.py)."""
    if not await lease.claim(conn, name=LEASE, holder=holder, now=now, ttl=lease_ttl):
        return Tick(leader=False)
    live = live or LivePolicy(default_action=settings.default_action)
    policy = await live.read(conn)
    await _expire(conn, policy, now)
    await lift_revived(conn, policy, now)
    if await activate_dead(conn, policy, now) and not await checkpoint():
        return Tick(leader=False)
    kinds: list[str] = []
    contained = 0
    try:
        for alert in policy.alerts:
            contained += await _evaluate(conn, policy, alert, now, checkpoint, kinds)
    except LeaseLost:
        log.warning("alerts.lease_lost", holder=holder)
    return Tick(
        leader=True,
        fired=kinds.count("alert.firing"),
        resolved=kinds.count("alert.resolved"),
        containments=contained,
        firing=await store.firing_count(conn),
    )


async def observe(conn: AsyncConnection, alert: Alert, now: datetime) -> dict[str, Observation]:
    """The alert's metric per key over its window (and, relative, the same hour of past days)."""
    window = timedelta(seconds=alert.window_seconds)
    current = await alert_metrics.measure(
        conn,
        metric=alert.metric,
        key=alert.key,
        digits=alert.digits,
        windows=[(now - window, now)],
        min_price=alert.min_price,
        settled_before=now - dead.RESULT_WAIT,
    )
    if alert.dead_seconds is not None:
        if not await dead.results_flowing(conn, now, alert.dead_seconds):
            return {}
        since = now - timedelta(seconds=alert.dead_seconds)
        for value in await dead.alive(conn, alert, list(current), since=since, until=now):
            del current[value]
    baseline: dict[str, float] = {}
    if alert.relative is not None:
        days = alert.relative.days
        past = [(now - window - d * DAY, now - d * DAY) for d in range(1, days + 1)]
        history = await alert_metrics.measure(
            conn,
            metric=alert.metric,
            key=alert.key,
            digits=alert.digits,
            windows=past,
            min_price=alert.min_price,
            settled_before=now - dead.RESULT_WAIT,
        )
        baseline = {value: m.total / days for value, m in history.items()}
    return {
        value: Observation(_value(alert, m.total, m.attempts), m.attempts, baseline.get(value))
        for value, m in current.items()
    }


def _value(alert: Alert, total: float, attempts: int) -> float:
    if alert.metric == "conversion":
        return total / attempts if attempts else 0.0
    return total


class LeaseLost(Exception):
    """Another process took the alerts lease during this evaluation: it evaluates now."""


async def _evaluate(
    conn: AsyncConnection,
    policy: Policy,
    alert: Alert,
    now: datetime,
    checkpoint: Checkpoint,
    kinds: list[str],
) -> int:
    """Evaluate one alert; append its transitions' kinds to `kinds`; how many it contained.
    Each transition is stored with its key's state; a containment is then made durable."""
    observations = await observe(conn, alert, now)
    stored = await store.load_states(conn, alert.name)
    states = {value: AlertState(**asdict(row)) for value, row in stored.items()}
    outcome = evaluate_alert(alert, observations, states, now)
    changed = {value: AlertStateRecord(**asdict(s)) for value, s in outcome.states.items()}
    contained = 0
    for transition in outcome.transitions:
        await store.save_states(conn, alert.name, [changed.pop(transition.value)], now)
        containment = None
        if transition.kind == "alert.firing" and alert.contain is not None:
            containment = await _contain(conn, policy, alert, transition.value, now)
        await _record(conn, policy, alert, transition, containment, now)
        kinds.append(transition.kind)
        if containment is not None:
            contained += 1
            if not await checkpoint():
                raise LeaseLost
    await store.save_states(conn, alert.name, list(changed.values()), now)
    return contained


async def _record(
    conn: AsyncConnection,
    policy: Policy,
    alert: Alert,
    transition: Transition,
    containment: Containment | None,
    now: datetime,
) -> None:
    event = AlertEvent(
        kind=transition.kind,
        alert=alert.name,
        key=alert.key,
        value=transition.value,
        metric=alert.metric,
        observed=transition.observed,
        threshold=transition.threshold,
        window=alert.window,
        at=now,
        containment_id=containment.id if containment else None,
    )
    await store.add_event(conn, event)
    log.warning(
        transition.kind,
        alert=alert.name,
        key=alert.key,
        value=transition.value,
        observed=transition.observed,
        threshold=transition.threshold,
    )
    body = messages.payload(
        transition.kind,
        alert=alert.name,
        key=alert.key,
        value=transition.value,
        at=now,
        observed=transition.observed,
        threshold=transition.threshold,
        window=alert.window,
        containment=containment,
    )
    await enqueue(conn, channels=list(alert.notify), body=body, now=now)
    if containment is not None:
        kind = "containment.proposed" if containment.status == "proposed" else "containment.created"
        created = messages.payload(
            kind,
            alert=alert.name,
            key=alert.key,
            value=transition.value,
            at=now,
            containment=containment,
        )
        await enqueue(conn, channels=list(alert.notify), body=created, now=now)


async def _contain(
    conn: AsyncConnection, policy: Policy, alert: Alert, value: str, now: datetime
) -> Containment | None:
    """Block exactly this key (escalated for repeats within a day); never an exempt number."""
    contain = alert.contain
    assert contain is not None
    if alert.key == "number" and _exempt(policy, value, now):
        log.info("containment.skipped", alert=alert.name, reason="never_contain")
        return None
    repeat = await store.containments_since(conn, key=alert.key, value=value, since=now - DAY)
    seconds = contain.seconds(repeat)
    status = "proposed" if await dead.for_review(conn, alert, value, now) else "active"
    containment_id = await store.add_containment(
        conn,
        key=alert.key,
        value=value,
        alert=alert.name,
        status=status,
        duration_seconds=seconds,
        created_at=now,
        created_by=f"alert:{alert.name}",
        expires_at=None if status == "proposed" else now + timedelta(seconds=seconds),
        updated_at=now,
    )
    log.warning(
        "containment.created",
        id=containment_id,
        key=alert.key,
        value=value,
        status=status,
        seconds=seconds,
    )
    return await store.containment_row(conn, containment_id)


def _exempt(policy: Policy, number: str, now: datetime) -> bool:
    named = {n.name: n for n in policy.lists}
    return any(
        compile_list(named[name]).match(number, now) is not None
        for name in policy.never_contain
        if name in named
    )


async def _expire(conn: AsyncConnection, policy: Policy, now: datetime) -> None:
    for expired in await store.expire_containments(conn, now):
        row = replace(expired, status="expired")
        channels = channels_of(policy, row.alert)
        await containment_changed(conn, "containment.expired", row, channels=channels, now=now)
