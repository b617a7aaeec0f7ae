"""`simulate --alerts FILE`: the channels and alerts of FILE put into the live policy of the
database the run decides on; its rules and lists stay as they are."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.model import Action
from app.services.policy.io import ImportReport, export_policy, import_policy
from app.services.tokens import Principal

ALERTING = ("channels", "alerts", "never_contain")
SIMULATOR = Principal(token_id=None, name="cli:simulate", role="admin")


def alerting_part(document: Any) -> dict[str, Any]:
    """The alerting keys of a policy document (a whole policy, or only those keys)."""
    if not isinstance(document, dict) or not document.get("alerts"):
        raise ValueError("the alerts file names no `alerts`")
    return {key: document[key] for key in ALERTING if key in document}


async def install_alerting(
    engine: AsyncEngine, document: Any, *, now: datetime, default_action: Action
) -> ImportReport:
    part = alerting_part(document)
    async with engine.begin() as conn:
        live = await export_policy(conn, default_action=default_action)
        return await import_policy(
            conn,
            document={**live, **part},
            by=SIMULATOR,
            now=now,
            default_action=default_action,
        )
