"""The policy's version kept in Redis beside the counters (services/policy/published.py).

With the decisions in PostgreSQL and the counters in Redis, a request event is counted
under the policy compiled last only if Redis holds that policy's version: two workers (two
apps on one database and one Redis prefix) stand for a deployment.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response
from redis.asyncio import Redis

from app.cli.common import run_in_transaction
from app.main import create_app
from app.rules.model import Policy
from app.services.policy import published
from app.services.policy.admin import replace_policy
from app.services.policy.published import PublishedVersion
from app.services.tokens import issue_token
from app.sinch import samples
from app.store import policy as policy_store
from app.store.policy_version_key import PolicyVersionKey
from tests.conftest import _truncate, make_settings
from tests.support import SinchSender

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALLOW_ALL: dict[str, Any] = {"rules": [], "default_action": "allow"}
BLOCK_SE: dict[str, Any] = {
    "rules": [
        {
            "name": "sweden-block",
            "action": "deny",
            "reason": "country_blocked",
            "when": {"field": "country", "op": "eq", "value": "SE"},
        }
    ],
    "default_action": "allow",
}


@dataclass
class Worker:
    sender: SinchSender
    runtime: Any

    async def action(self) -> str:
        number = f"+4670{random.randint(1_000_000, 9_999_999)}"
        response = await self.sender.post(samples.request_event(number=number))
        assert response.status_code == 200
        return str(response.json()["action"])

    async def put_policy(self, policy: dict[str, Any], admin: dict[str, str]) -> Response:
        return await self.sender.client.put("/admin/policy", json=policy, headers=admin)

    def misses(self) -> float:
        """Request events counted on the slow path (verifyguard_policy_version_misses)."""
        registry = self.runtime.metrics.registry
        return float(registry.get_sample_value("verifyguard_policy_version_misses_total"))


@dataclass
class Deployment:
    workers: tuple[Worker, Worker]
    admin: dict[str, str]
    redis: Redis
    key: str

    async def kept(self) -> int | None:
        value = await self.redis.get(self.key)
        return None if value is None else int(value)

    async def version(self) -> int:
        async with self.workers[0].runtime.engine.connect() as conn:
            return await policy_store.policy_version(conn)


@pytest.fixture
async def deployment(
    postgres_database: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Deployment]:
    # The tests reconcile when they mean to: none in the background meanwhile.
    monkeypatch.setattr(published, "RECONCILE_SECONDS", 3600.0)
    await _truncate(postgres_database)
    settings = make_settings(postgres_database, tmp_path, redis_url=redis_url)
    async with AsyncExitStack() as stack:
        workers = []
        for _ in range(2):
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = ASGITransport(app=app, raise_app_exceptions=False)
            http = AsyncClient(transport=transport, base_url="http://verifyguard.test")
            await stack.enter_async_context(http)
            sender = SinchSender(http, path=settings.callback_path)
            workers.append(Worker(sender, app.state.runtime))
        engine = workers[0].runtime.engine
        async with engine.begin() as conn:
            _, token = await issue_token(conn, name="alice", role="admin", now=datetime.now(UTC))
        redis = Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        yield Deployment(
            (workers[0], workers[1]),
            {"Authorization": f"Bearer {token}"},
            redis,
            f"{settings.counter_prefix}policy-version",
        )
        keys = [key async for key in redis.scan_iter(f"{settings.redis_prefix}*")]
        if keys:
            await redis.delete(*keys)


async def _change_in_sql(deployment: Deployment, policy: dict[str, Any]) -> None:
    """A change made past VerifyGuard's API and CLI (SQL): Redis is not told."""
    async with deployment.workers[0].runtime.engine.begin() as conn:
        await replace_policy(
            conn, policy=Policy.model_validate(policy), now=datetime.now(UTC), actor="sql"
        )


async def test_starting_keeps_the_version(deployment: Deployment) -> None:
    assert await deployment.kept() == await deployment.version()


async def test_a_change_through_the_api_applies_on_every_worker_at_once(
    deployment: Deployment,
) -> None:
    a, b = deployment.workers
    assert (await a.put_policy(ALLOW_ALL, deployment.admin)).status_code == 200
    assert [await a.action(), await b.action()] == ["allow", "allow"]
    response = await a.put_policy(BLOCK_SE, deployment.admin)
    assert response.status_code == 200, response.text
    assert await deployment.kept() == await deployment.version()
    misses = b.misses()
    # b compiled the old policy and has not read the version since: Redis tells it.
    assert [await b.action(), await a.action()] == ["deny", "deny"]
    assert b.runtime.policies.loaded.version == await deployment.version()
    assert b.misses() == misses + 1  # then the fast path again
    assert await b.action() == "deny"
    assert b.misses() == misses + 1


async def test_a_change_in_sql_applies_after_the_reconcile(deployment: Deployment) -> None:
    a, b = deployment.workers
    assert (await a.put_policy(ALLOW_ALL, deployment.admin)).status_code == 200
    assert await b.action() == "allow"
    await _change_in_sql(deployment, BLOCK_SE)
    # Until a worker compares the two (every RECONCILE_SECONDS), the old policy applies.
    assert await b.action() == "allow"
    await b.runtime.published.reconcile()
    assert await deployment.kept() == await deployment.version()
    assert [await a.action(), await b.action()] == ["deny", "deny"]


async def test_a_missing_key_is_restored_by_the_next_request(deployment: Deployment) -> None:
    a, b = deployment.workers
    assert (await a.put_policy(ALLOW_ALL, deployment.admin)).status_code == 200
    assert await b.action() == "allow"
    await _change_in_sql(deployment, BLOCK_SE)
    await deployment.redis.delete(deployment.key)  # Redis restarted empty, say
    assert await b.action() == "deny"  # read the version from the database
    assert await deployment.kept() == await deployment.version()
    assert await a.action() == "deny"


async def test_a_key_ahead_of_the_database_is_lowered(deployment: Deployment) -> None:
    """The database restored from a backup: its version went back. Each request reads the
    version from the database meanwhile (decided right); the reconcile lowers the key."""
    a, b = deployment.workers
    assert (await a.put_policy(BLOCK_SE, deployment.admin)).status_code == 200
    version = await deployment.version()
    await deployment.redis.set(deployment.key, version + 5)
    misses = b.misses()
    assert [await a.action(), await b.action(), await b.action()] == ["deny"] * 3
    assert await deployment.kept() == version + 5
    assert b.misses() == misses + 2  # every request, until the reconcile
    await a.runtime.published.reconcile()
    assert await deployment.kept() == version
    calls: list[int] = []
    backend = b.runtime.aggregator.backend
    observe = backend.observe

    async def spy(conn: Any, changes: Any, reads: Any, **options: Any) -> Any:
        calls.append(options.get("version"))
        return await observe(conn, changes, reads, **options)

    backend.observe = spy
    assert await b.action() == "deny"
    assert calls == [version], "not counted under the version Redis checks"


async def test_the_key_is_never_lowered_by_a_slower_reader(deployment: Deployment) -> None:
    published = deployment.workers[0].runtime.published
    version = await deployment.version()
    await published.key.raise_to(version + 2)
    assert await published.key.raise_to(version) == version + 2
    assert await deployment.kept() == version + 2


def test_the_cli_tells_redis_of_its_change(
    postgres_database: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_in_transaction` (every CLI change) raises the key once its change committed."""
    settings = make_settings(postgres_database, tmp_path, redis_url=redis_url)
    monkeypatch.setenv("VERIFYGUARD_DATABASE_URL", postgres_database)
    monkeypatch.setenv("VERIFYGUARD_REDIS_URL", redis_url)
    monkeypatch.setenv("VERIFYGUARD_REDIS_PREFIX", settings.redis_prefix)
    key = f"{settings.counter_prefix}policy-version"

    async def bump(conn: Any) -> int:
        return await policy_store.bump_version(conn, now=datetime.now(UTC), actor="cli")

    async def kept() -> bytes | None:
        redis = Redis.from_url(redis_url)
        try:
            value: bytes | None = await redis.get(key)
            await redis.delete(key)
            return value
        finally:
            await redis.aclose()

    version = run_in_transaction(bump)
    assert asyncio.run(kept()) == str(version).encode()


async def test_a_change_is_made_though_redis_cannot_be_told(deployment: Deployment) -> None:
    """Redis away as the change commits: the change is answered as made (logged, no 5xx), and
    a worker's reconcile raises the key once Redis answers again."""
    a, b = deployment.workers
    assert (await a.put_policy(ALLOW_ALL, deployment.admin)).status_code == 200
    assert await b.action() == "allow"
    told = a.runtime.published
    away = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    a.runtime.published = PublishedVersion(told.engine, PolicyVersionKey(away, prefix="x:"))
    try:
        response = await a.put_policy(BLOCK_SE, deployment.admin)
    finally:
        a.runtime.published = told
        await away.aclose()
    assert response.status_code == 200, response.text
    assert await deployment.kept() == await deployment.version() - 1
    await b.runtime.published.reconcile()
    assert [await a.action(), await b.action()] == ["deny", "deny"]
