"""Shared CLI plumbing: settings, a short-lived engine, one transaction per command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

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
