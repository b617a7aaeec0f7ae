"""Shared CLI plumbing: settings, a short-lived engine, one transaction per command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from app.devapp import load_or_create_dev_app
from app.settings import Settings
from app.store.base import create_engine

T = TypeVar("T")


def run_in_transaction(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against the configured database."""

    async def runner() -> T:
        engine = create_engine(Settings().database_url)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(runner())


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
