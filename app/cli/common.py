"""Shared CLI plumbing: one transaction per command on a short-lived engine, and where the
commands that play Sinch (send, simulate, emulate) post their callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.devapp import load_or_create_dev_app
from app.settings import Settings
from app.simulator.callback import CallbackTarget
from app.store.base import create_engine

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


def run_in_transaction(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against the configured database."""

    async def in_transaction(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return run_with_engine(in_transaction)


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
