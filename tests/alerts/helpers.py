"""Policies, stored attempts and reads for the alert tests."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select

from app.sinch import samples
from app.store.models import VerificationRow
from tests.alerts.conftest import ADMIN, runtime_of
from tests.alerts.receiver import Receiver
from tests.audit.rows import insert_rows, row
from tests.support import SinchSender

ATTACKED = "+46701230"  # the range the attack walks: +46701230000, +46701230001, …
LEGIT = "+46709876543"  # same country, another range
ALLOWED = "+46701230777"  # in the attacked range, on the allowlist

POLICY_YAML = """
lists:
  - name: allowlist
    kind: number
    entries: [{{value: "{allowed}"}}]
rules:
  - name: allowlist
    priority: 0
    action: allow
    reason: allowlisted
    when: {{in_list: allowlist}}
channels:
  - {{name: ops, kind: webhook, url: "{hook}"}}
  - {{name: chat, kind: slack, url: "{slack}", console_url: "https://console.example"}}
alerts:
  - name: range-attempts
    metric: attempts
    key: range
    digits: 8
    window: 10m
    above: 5
    cooldown: 30m
    notify: [ops, chat]
    contain: {{for: 1h, escalate: [6h, 24h], review: {review}}}
"""


def policy_yaml(receiver: Receiver, *, review: bool = False) -> str:
    return POLICY_YAML.format(
        allowed=ALLOWED,
        hook=receiver.url("/hook"),
        slack=receiver.url("/slack"),
        review="true" if review else "false",
    )


async def put_policy(client: AsyncClient, document: str) -> dict[str, Any]:
    response = await client.put(
        "/admin/policy", content=document, headers={**ADMIN, "content-type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def attempts_at(
    client: AsyncClient, at: datetime, count: int = 6, prefix: str = ATTACKED
) -> None:
    """`count` stored attempts to numbers of one range, decided at `at`."""
    rows = [
        row(number=f"{prefix}{i:03d}", requested_at=at, decided_at=at, created_at=at)
        for i in range(count)
    ]
    await insert_rows(runtime_of(client).engine, rows)


async def get(client: AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, headers=ADMIN, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def reason_of(client: AsyncClient, sinch: SinchSender, number: str) -> tuple[str, Any]:
    """Send a request event for `number`; the stored reason and decision."""
    event = samples.request_event(number=number)
    response = await sinch.post(event)
    assert response.status_code == 200, response.text
    async with runtime_of(client).engine.connect() as conn:
        stmt = select(VerificationRow.reason, VerificationRow.decision).where(
            VerificationRow.id == event["id"]
        )
        stored = (await conn.execute(stmt)).one()
    return str(stored.reason), stored.decision


async def until_reason(
    client: AsyncClient, sinch: SinchSender, number: str, reason: str, *, within: float = 2.0
) -> tuple[float, Any]:
    """Seconds until a request event for `number` is decided with `reason` (fails after `within`)."""
    started = time.monotonic()
    while True:
        got, decision = await reason_of(client, sinch, number)
        elapsed = time.monotonic() - started
        if got == reason:
            return elapsed, decision
        assert elapsed < within, f"still {got!r} after {elapsed:.2f}s"
        await asyncio.sleep(0.05)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
