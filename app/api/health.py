"""Liveness and readiness probes.

Ready is 200 while VerifyGuard can answer Sinch: `ready`, or `degraded` while it runs on
its spool (database away, or the spool still being replayed). 503 names what is missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import RuntimeDep
from app.store.migrate import current_revision, head_revision, hour_trigger_problems

router = APIRouter(tags=["health"])
CHECK_SECONDS = 2.0
_STATE = {
    "type": "object",
    "required": ["status", "policy_loaded", "spool_depth"],
    "properties": {
        "status": {"enum": ["ready", "degraded", "unavailable"]},
        "reason": {"type": "string"},
        "schema": {"type": "string"},
        "policy_loaded": {"type": "boolean"},
        "spool_depth": {"type": "integer"},
    },
}
READINESS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Ready, or degraded (answering from the spool).",
        "content": {"application/json": {"schema": _STATE}},
    },
    503: {
        "description": "Not ready; `reason` says what is missing (a probe's answer).",
        "content": {"application/json": {"schema": _STATE}},
    },
}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses=READINESS)
async def readyz(runtime: RuntimeDep) -> JSONResponse | dict[str, Any]:
    """Database reachable, schema at head (with its triggers), policy loaded; `degraded`
    while on the spool."""
    outage = runtime.outage
    policy_loaded = runtime.policies.loaded is not None
    state = {"policy_loaded": policy_loaded, "spool_depth": outage.spool.depth}
    if outage.down:
        if not policy_loaded and runtime.settings.outage_mode == "spool":
            return _not_ready("database unreachable and no policy loaded", state)
        reason = f"database unreachable: answering in {runtime.settings.outage_mode} mode"
        return {"status": "degraded", "reason": reason, **state}
    try:
        revision = await asyncio.wait_for(current_revision(runtime.engine), CHECK_SECONDS)
        at_head = revision == head_revision()
        triggers = (
            await asyncio.wait_for(hour_trigger_problems(runtime.engine), CHECK_SECONDS)
            if at_head
            else []
        )
    except Exception as exc:
        return _not_ready(f"database unreachable: {type(exc).__name__}", state)
    if not at_head:
        return _not_ready(f"schema at {revision}, expected {head_revision()}", state)
    if triggers:
        reason = f"counter_hours triggers: {'; '.join(triggers)} (`verifyguard db repair-triggers`)"
        return _not_ready(reason, state)
    if not policy_loaded:
        return _not_ready("no policy loaded", state)
    if outage.spool.depth:
        reason = "replaying the spool into the database"
        return {"status": "degraded", "reason": reason, "schema": revision, **state}
    return {"status": "ready", "schema": revision, **state}


def _not_ready(reason: str, state: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason, **state}, status_code=503)
