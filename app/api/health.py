"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import RuntimeDep
from app.store.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> JSONResponse | dict[str, Any]:
    """Database reachable, schema at head, policy loaded."""
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        revision = await current_revision(runtime.engine)
    except Exception as exc:
        return _not_ready(f"database unreachable: {type(exc).__name__}")
    if revision != head_revision():
        return _not_ready(f"schema at {revision}, expected {head_revision()}")
    return {
        "status": "ready",
        "schema": revision,
        "policy_loaded": runtime.policies.loaded is not None,
    }


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
