"""Keys nobody verifies in: which of an alert's keys had no attempt verified within a period,
and whether that can be judged at all (results must be flowing)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerts import Alert
from app.rules.durations import parse_duration
from app.store import alert_metrics

# "Nobody verified in this key" means something only while results flow: the deployment has
# an attempt at least this old that verified. On a new deployment (or with result callbacks
# not arriving) every key looks dead; real users' results take 8-55 s, and by then a busy
# country's own have come in. On the simulator's fresh databases (seeds 1-10, 1-10 sign-ups/s)
# 10 s was enough to keep real users' countries out, and slow pumping's first alert passes
# 60 s from 60 s on.
RESULTS_FLOWING = timedelta(seconds=30)


async def results_flowing(conn: AsyncConnection, now: datetime, seconds: int) -> bool:
    """Whether an attempt of the last `seconds`, at least RESULTS_FLOWING old, has verified."""
    since = now - timedelta(seconds=seconds)
    return await alert_metrics.any_verified(conn, since=since, until=now - RESULTS_FLOWING)


async def verified(
    conn: AsyncConnection, alert: Alert, values: list[str], now: datetime, seconds: int
) -> set[str]:
    """Which of the alert's key `values` had an attempt verified in the last `seconds`."""
    return await alert_metrics.verified_keys(
        conn,
        key=alert.key,
        digits=alert.digits,
        values=values,
        since=now - timedelta(seconds=seconds),
        until=now,
    )


async def for_review(conn: AsyncConnection, alert: Alert, value: str, now: datetime) -> bool:
    """Whether the containment waits for an admin: `review`, unless the key is dead (nobody
    verified in it within `active_if_no_verified_in`)."""
    contain = alert.contain
    if contain is None or not contain.review:
        return False
    if contain.active_if_no_verified_in is None:
        return True
    seconds = parse_duration(contain.active_if_no_verified_in)
    if not await results_flowing(conn, now, seconds):
        return True
    return bool(await verified(conn, alert, [value], now, seconds))
