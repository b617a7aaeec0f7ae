"""Dead keys: which of an alert's keys converted below DEAD_CONVERSION over a period (nobody
real verifies there), and whether that can be judged at all (results must be flowing)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerts import DEAD_CONVERSION, Alert
from app.rules.durations import parse_duration
from app.store import alert_metrics

# "Nobody verifies in this key" means something only while results flow: the deployment has
# an attempt at least this old that verified. On a new deployment (or with result callbacks
# not arriving) every key looks dead; real users' results take 8-55 s, and by then a busy
# country's own have come in. On the simulator's fresh databases (seeds 1-10, 1-10 sign-ups/s)
# 10 s was enough to keep real users' countries out, and slow pumping's first alert passes
# 60 s from 60 s on.
RESULTS_FLOWING = timedelta(seconds=30)
# An allowed attempt without a result counts as unverified (against a key's conversion, and
# towards its deadness) only once it is this old: real users' results take 8-55 s, so a younger
# one is most likely on its way (counted as unverified, a busy country's first minute of
# pending results made it look dead and contained it: simulator seed 4, NG).
RESULT_WAIT = timedelta(seconds=60)


async def results_flowing(conn: AsyncConnection, now: datetime, seconds: int) -> bool:
    """Whether an attempt of the last `seconds`, at least RESULTS_FLOWING old, has verified."""
    since = now - timedelta(seconds=seconds)
    return await alert_metrics.any_verified(conn, since=since, until=now - RESULTS_FLOWING)


async def alive(
    conn: AsyncConnection,
    alert: Alert,
    values: list[str],
    *,
    since: datetime,
    until: datetime,
) -> set[str]:
    """Which of the alert's key `values` converted at DEAD_CONVERSION or better in the span
    (over the attempts settled by `until`: see RESULT_WAIT)."""
    return await alert_metrics.alive_keys(
        conn,
        key=alert.key,
        digits=alert.digits,
        values=values,
        since=since,
        until=until,
        conversion=DEAD_CONVERSION,
        settled_before=until - RESULT_WAIT,
    )


async def for_review(conn: AsyncConnection, alert: Alert, value: str, now: datetime) -> bool:
    """Whether the containment waits for an admin: `review`, unless the key is dead (nobody
    dead over `active_if_dead_over`)."""
    contain = alert.contain
    if contain is None or not contain.review:
        return False
    if contain.active_if_dead_over is None:
        return True
    seconds = parse_duration(contain.active_if_dead_over)
    if not await results_flowing(conn, now, seconds):
        return True
    since = now - timedelta(seconds=seconds)
    return bool(await alive(conn, alert, [value], since=since, until=now))
