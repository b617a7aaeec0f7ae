"""Test helpers: sign callbacks exactly as Sinch does, and read what the app stored."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from httpx import AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.model import Policy
from app.services.policy.admin import replace_policy
from app.sinch.signature import callback_headers
from app.store.base import create_engine
from app.store.redis_counters import RedisCounters

TEST_APP_KEY = "5F5C418A-0F91-4BBC-8234-A9BF5EDDAD97"
TEST_APP_SECRET = "JViE5vDor0Sw3WllZka15Q=="


class SinchSender:
    """Posts events the way Sinch does: raw JSON body, signed headers."""

    def __init__(self, client: AsyncClient, *, path: str) -> None:
        self.client = client
        self.path = path

    def headers(self, body: bytes, *, now: datetime | None = None, **over: str) -> dict[str, str]:
        return callback_headers(
            key=over.pop("key", TEST_APP_KEY),
            secret_b64=over.pop("secret", TEST_APP_SECRET),
            body=body,
            path=over.pop("signed_path", self.path),
            now=now or datetime.now(UTC),
            **over,
        )

    async def post(self, event: dict[str, Any] | bytes, **over: Any) -> Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        headers = self.headers(body, **over)
        return await self.client.post(self.path, content=body, headers=headers)


@asynccontextmanager
async def engine_on_empty(url: str, tables: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the database at `url` with `tables` (a TRUNCATE list) emptied before the
    block and again after it."""
    engine = create_engine(url)
    truncate = text(f"TRUNCATE {tables}")
    try:
        async with engine.begin() as conn:
            await conn.execute(truncate)
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(truncate)
        await engine.dispose()


async def install_policy(runtime: Any, policy: Policy, *, now: datetime | None = None) -> None:
    """`policy` made the live one as the admin API makes it: committed, then told to the
    counters in Redis where they check its version (services/policy/published.py)."""
    async with runtime.engine.begin() as conn:
        await replace_policy(conn, policy=policy, now=now or datetime.now(UTC), actor="test")
    await policy_told(runtime)


async def policy_told(runtime: Any) -> None:
    """After a policy change a test committed itself: what the admin API does next."""
    if runtime.published is not None:
        await runtime.published.publish()


@asynccontextmanager
async def redis_counters(client: Redis, now: datetime) -> AsyncIterator[RedisCounters]:
    """Redis counters (1-minute buckets, a day kept) under a key prefix of their own, started
    at `now`; their keys deleted after the block."""
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:c:"
    backend = RedisCounters(client, bucket_seconds=60, retention_seconds=86_400, prefix=prefix)
    await backend.start(now)
    try:
        yield backend
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await backend.close()


async def redis_commands(
    client: Redis, prefix: str, work: Callable[[], Awaitable[None]], *, by_scripts: bool
) -> Counter[str]:
    """The commands run on keys under `prefix` while `work` ran, by name: those scripts and
    functions ran (`by_scripts`), or those clients sent. MONITOR sees every client's, so the
    count does not depend on what else the server is doing."""
    done, counts = f"{prefix}done", Counter[str]()
    async with client.monitor() as monitor:
        await work()
        await client.get(done)
        while True:
            line = (await monitor.connection.read_response()).decode(errors="replace")
            if done in line:
                return counts
            if prefix in line and (" lua] " in line) == by_scripts:
                counts[line.split("] ", 1)[1].split(" ", 1)[0].strip('"').upper()] += 1
