"""Install the starter policy into a database that has never had one."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.starter import starter_policy
from app.services.policy.admin import replace_policy
from app.store import policy as store

log = structlog.get_logger()


async def install_starter_policy(engine: AsyncEngine, *, now: datetime) -> bool:
    """True if installed: only when no policy change was ever made (version 0, no rules)."""
    async with engine.begin() as conn:
        if (
            await store.policy_version(conn, for_update=True) != 0
            or await store.rule_count(conn) != 0
        ):
            return False
        version = await replace_policy(conn, policy=starter_policy(), now=now, actor="starter")
    log.info("policy.starter_installed", version=version)
    return True
