"""Bearer tokens for the admin and audit APIs: issue, resolve, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import tokens as store

Role = Literal["admin", "auditor"]
PREFIX = "vg_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a stored token, or the bootstrap token from the environment."""

    token_id: int | None
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    conn: AsyncConnection, *, name: str, role: Role, now: datetime
) -> tuple[int, str]:
    """Create a token; the clear value is returned once and never stored."""
    token = PREFIX + secrets.token_urlsafe(32)
    token_id = await store.add_token(
        conn, name=name, role=role, token_hash=hash_token(token), now=now
    )
    return token_id, token


async def resolve_token(
    conn: AsyncConnection, token: str, *, bootstrap: str | None
) -> Principal | None:
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return Principal(token_id=None, name="bootstrap", role="admin")
    return _principal(await store.find_active(conn, hash_token(token)))


async def resolve_token_id(conn: AsyncConnection, token_id: int) -> Principal | None:
    """The principal of a stored token, while it is not revoked (console sessions)."""
    return _principal(await store.find_active_by_id(conn, token_id))


def _principal(found: store.Token | None) -> Principal | None:
    if found is None:
        return None
    role: Role = "admin" if found.role == "admin" else "auditor"
    return Principal(token_id=found.id, name=found.name, role=role)
