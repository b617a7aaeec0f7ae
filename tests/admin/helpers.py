"""Helpers for admin API tests: read what the app stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import policy as policy_store

BLOCKLIST_RULE: dict[str, Any] = {
    "name": "sweden-block",
    "priority": 5,
    "action": "deny",
    "reason": "country_blocked",
    "when": {"field": "country", "op": "eq", "value": "SE"},
}


async def version(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await policy_store.policy_version(conn)


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(table)
        return int((await conn.execute(stmt)).scalar_one())


async def rows(engine: AsyncEngine, table: Table) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(select(table))).mappings()]
