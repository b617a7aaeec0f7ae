"""An alert's life on stored rows and an injected clock: fire, cooldown, resolve after a full
window within the threshold, escalation of repeated containments, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from tests.alerts.conftest import runtime_of
from tests.alerts.helpers import ATTACKED, attempts_at, get, minutes, policy_yaml, put_policy
from tests.alerts.receiver import Receiver


async def test_cooldown_resolve_escalation_and_expiry(
    client: AsyncClient, receiver: Receiver
) -> None:
    await put_policy(client, policy_yaml(receiver))
    jobs = runtime_of(client).alerts
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    async def kinds() -> list[str]:
        return [e["kind"] for e in reversed(await get(client, "/admin/alerts/events"))]

    await attempts_at(client, t0 - minutes(1))
    assert (await jobs.evaluate_once(t0)).transitions == 1
    assert (await jobs.evaluate_once(t0 + minutes(5))).transitions == 0  # still firing
    await jobs.evaluate_once(t0 + minutes(11))  # within the threshold from here on …
    await jobs.evaluate_once(t0 + minutes(15))  # … but not yet for a full window
    assert await kinds() == ["alert.firing"]
    await jobs.evaluate_once(t0 + minutes(21))
    assert await kinds() == ["alert.firing", "alert.resolved"]

    await attempts_at(client, t0 + minutes(24))
    await jobs.evaluate_once(t0 + minutes(25))  # over again, but within the 30 m cooldown
    assert await kinds() == ["alert.firing", "alert.resolved"]
    await jobs.evaluate_once(t0 + minutes(31))
    assert await kinds() == ["alert.firing", "alert.resolved", "alert.firing"]

    await jobs.evaluate_once(t0 + minutes(42))
    await jobs.evaluate_once(t0 + minutes(53))  # resolved again
    await attempts_at(client, t0 + minutes(61))
    await jobs.evaluate_once(t0 + minutes(62))  # fires a third time; the first block expired
    assert (await kinds()).count("alert.firing") == 3

    rows = list(reversed(await get(client, "/admin/containments")))
    assert [row["duration_seconds"] for row in rows] == [3600, 6 * 3600, 24 * 3600]
    assert [row["status"] for row in rows] == ["expired", "active", "active"]
    assert {row["value"] for row in rows} == {ATTACKED}
    firing = [e for e in await get(client, "/admin/alerts/events") if e["kind"] == "alert.firing"]
    assert all(e["containment_id"] for e in firing)
    types = [n["type"] for n in await get(client, "/admin/alerts/notifications", limit=1000)]
    assert types.count("alert.firing") == 3 * 2  # two channels
    assert types.count("alert.resolved") == 2 * 2
    assert types.count("containment.expired") == 2


async def test_relative_threshold_uses_the_same_hour_of_past_days(
    client: AsyncClient, receiver: Receiver
) -> None:
    document = policy_yaml(receiver).replace(
        "above: 5", "relative: {factor: 3, days: 7}\n    min_attempts: 3"
    )
    await put_policy(client, document)
    jobs = runtime_of(client).alerts
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for day in range(1, 8):  # two attempts a day at this hour, for a week
        await attempts_at(client, now - timedelta(days=day, minutes=2), count=2)
    await attempts_at(client, now - minutes(2), count=6)
    assert (await jobs.evaluate_once(now)).transitions == 0  # 6 is not above 3 x 2
    await attempts_at(client, now - minutes(1), count=1)
    assert (await jobs.evaluate_once(now)).transitions == 1  # 7 is
    [event] = await get(client, "/admin/alerts/events")
    assert (event["observed"], event["threshold"]) == (7, 6)
