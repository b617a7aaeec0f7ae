"""The delivery job, run every second, only reads while no notification is due: it neither
claims nor renews the alerts lease then, so it writes nothing and commits nothing (each
claim was a row version and a WAL flush a second beside the callbacks' commits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import select

from app.store.lease import leases
from tests.alerts.conftest import runtime_of
from tests.alerts.helpers import attempts_at, minutes, policy_yaml, put_policy
from tests.alerts.receiver import Receiver


async def _lease(client: AsyncClient) -> tuple[str, datetime] | None:
    async with runtime_of(client).engine.connect() as conn:
        row = (
            await conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == "alerts")
            )
        ).first()
    return None if row is None else (row[0], row[1])


async def test_a_delivery_with_nothing_due_leaves_the_lease_as_it_was(
    client: AsyncClient, receiver: Receiver
) -> None:
    await put_policy(client, policy_yaml(receiver))
    jobs = runtime_of(client).alerts
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    unclaimed = await _lease(client)
    assert await jobs.deliver_once(t0) == 0
    assert await _lease(client) == unclaimed  # not claimed: nothing was due
    assert (await jobs.evaluate_once(t0)).leader
    claimed = await _lease(client)
    assert await jobs.deliver_once(t0 + timedelta(seconds=10)) == 0
    assert await _lease(client) == claimed
    # Something due: claimed (renewed) and delivered, as before.
    await attempts_at(client, t0 + minutes(1))
    assert (await jobs.evaluate_once(t0 + minutes(2))).fired == 1
    assert await jobs.deliver_once(t0 + minutes(2)) > 0
    renewed = await _lease(client)
    assert renewed is not None and claimed is not None and renewed[1] > claimed[1]
