"""API tokens: stored as SHA-256 hashes, never in clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import ApiTokenRow

tokens = cast(Table, ApiTokenRow.__table__)


@dataclass(frozen=True, slots=True)
class Token:
    """A token as listed and as resolved (its hash stays in the store)."""

    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


_LISTED = (tokens.c.id, tokens.c.name, tokens.c.role, tokens.c.created_at, tokens.c.revoked_at)


async def add_token(
    conn: AsyncConnection, *, name: str, role: str, token_hash: str, now: datetime
) -> int:
    stmt = insert(tokens).values(name=name, role=role, token_hash=token_hash, created_at=now)
    return int((await conn.execute(stmt.returning(tokens.c.id))).scalar_one())


async def find_active(conn: AsyncConnection, token_hash: str) -> Token | None:
    stmt = select(*_LISTED).where(tokens.c.token_hash == token_hash, tokens.c.revoked_at.is_(None))
    row = (await conn.execute(stmt)).one_or_none()
    return Token(*row) if row is not None else None


async def list_tokens(conn: AsyncConnection) -> list[Token]:
    stmt = select(*_LISTED).order_by(tokens.c.id)
    return [Token(*row) for row in await conn.execute(stmt)]


async def revoke(conn: AsyncConnection, token_id: int, *, now: datetime) -> bool:
    stmt = (
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return (await conn.execute(stmt)).rowcount > 0


async def find_active_by_id(conn: AsyncConnection, token_id: int) -> Token | None:
    stmt = select(*_LISTED).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
    row = (await conn.execute(stmt)).one_or_none()
    return Token(*row) if row is not None else None
