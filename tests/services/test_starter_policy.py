"""The starter policy goes into a database that never had one exactly once, however many
processes start on it at the same moment (`verifyguard serve --workers 2` on a fresh
database: both workers install it as they start)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.starter import starter_policy
from app.services.policy.starter import install_starter_policy
from app.store import policy as store
from app.store.base import create_engine

NOW = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)


async def _policy(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        return await store.policy_version(conn, for_update=False), await store.rule_count(conn)


async def test_processes_starting_together_install_the_starter_policy_once(
    database_url: str,
) -> None:
    """Each engine is a process of its own (SQLite: its own connection to the file). On
    SQLite the check (version 0, no rules) ran before the transaction took the write lock:
    both saw an empty policy, the second's rules collided with the first's, and that
    worker failed to start."""
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        installed = await asyncio.gather(
            *(install_starter_policy(engine, now=NOW) for engine in engines)
        )
        version, rules = await _policy(engines[0])
    finally:
        for engine in engines:
            await engine.dispose()
    assert sorted(installed) == [False, False, True]
    assert version == 1
    assert rules == len(starter_policy().rules)
