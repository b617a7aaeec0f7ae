"""Shared CLI plumbing: one transaction per command on a short-lived engine, and where the
commands that play Sinch (send, simulate, emulate) post their callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.devapp import load_or_create_dev_app
from app.services.policy.published import PublishedVersion
from app.settings import Settings
from app.simulator.callback import CallbackTarget
from app.store.base import create_engine, create_reader
from app.store.policy import changed_on
from app.store.policy_version_key import PolicyVersionKey

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
URL_HELP = "VerifyGuard's base URL, or its callback URL as given to Sinch."


def run_with_engine(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work` on an engine for the configured database, disposed of afterwards."""

    async def runner() -> T:
        engine = create_engine(Settings().database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(runner())


def run_with_engines(work: Callable[[AsyncEngine, AsyncEngine], Awaitable[T]]) -> T:
    """`run_with_engine` with a reader beside the engine (store/base.py `create_reader`: on
    a SQLite file a connection of its own, so that a long read holds no write back)."""

    async def with_reader(engine: AsyncEngine) -> T:
        reader = create_reader(engine)
        try:
            return await work(engine, reader)
        finally:
            if reader is not engine:
                await reader.dispose()

    return run_with_engine(with_reader)


def run_in_transaction(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against the configured database; a policy
    change it made, told to the counters in Redis (services/policy/published.py)."""

    async def in_transaction(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            result = await work(conn)
            changed = changed_on(conn)
        if changed:
            await publish_policy(engine, Settings())
        return result

    return run_with_engine(in_transaction)


async def publish_policy(engine: AsyncEngine, settings: Settings) -> None:
    """Where request events are counted in Redis and decided in PostgreSQL, the policy's
    version kept there raised to the database's (the servers' own check would within a
    second: this makes the change apply to the next request event)."""
    if not settings.redis_url or settings.is_sqlite:
        return
    redis = Redis.from_url(settings.redis_url)
    try:
        key = PolicyVersionKey(redis, prefix=settings.counter_prefix)
        await PublishedVersion(engine, key).changed()
    finally:
        await redis.aclose()


def callback_credentials(
    settings: Settings, key: str | None, secret: str | None
) -> tuple[str, str]:
    """Given ones, else the first configured Sinch app, else the local development app."""
    if key and secret:
        return key, secret
    if settings.sinch_apps:
        first_key, first_secret = next(iter(settings.sinch_apps.items()))
        return first_key, first_secret.get_secret_value()
    return load_or_create_dev_app(settings.dev_app_file)


def callback_target(url: str, key: str | None, secret: str | None) -> CallbackTarget:
    """VerifyGuard's callback at `url` (base or callback URL), posted as the Sinch app
    `callback_credentials` picks."""
    settings = Settings()
    key, secret = callback_credentials(settings, key, secret)
    return CallbackTarget.at(
        url, path=settings.callback_path, signed_path=settings.signed_path, key=key, secret=secret
    )
