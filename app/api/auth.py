"""Bearer-token authentication and role checks for /admin and /audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.deps import RuntimeDep
from app.errors import Forbidden, Unauthorized
from app.services.tokens import Principal, resolve_token

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer token is required.", code="missing_token", headers=_CHALLENGE)
    bootstrap = runtime.settings.bootstrap_token
    async with runtime.engine.connect() as conn:
        principal = await resolve_token(
            conn, token.strip(), bootstrap=bootstrap.get_secret_value() if bootstrap else None
        )
    if principal is None:
        raise Unauthorized(
            "The token is unknown or revoked.", code="invalid_token", headers=_CHALLENGE
        )
    request.state.principal = principal
    return principal


async def require_auditor(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Auditors and admins may read."""
    return principal


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("This action needs an admin token.", code="admin_required")
    return principal


AuditorDep = Annotated[Principal, Depends(require_auditor)]
AdminDep = Annotated[Principal, Depends(require_admin)]
