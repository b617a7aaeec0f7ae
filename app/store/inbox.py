"""Writes of callback intake: the inbox row, the verification upserts, shadow matches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, case, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import CallbackRow, VerificationMatchRow, VerificationRow
from app.store.upsert import insert_for

callbacks = cast(Table, CallbackRow.__table__)
verifications = cast(Table, VerificationRow.__table__)
matches = cast(Table, VerificationMatchRow.__table__)

PENDING = "PENDING"


async def claim_callback(conn: AsyncConnection, row: dict[str, Any]) -> int | None:
    """Insert an inbox row; None when its dedupe key was already stored (a redelivery)."""
    stmt = insert_for(conn, callbacks).values(**row)
    if row.get("dedupe_key") is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    result = await conn.execute(stmt.returning(callbacks.c.id))
    return result.scalar_one_or_none()


async def add_callback(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Insert an inbox row that has no dedupe key (rejected or unparseable bodies)."""
    await conn.execute(insert(callbacks).values(**row))


async def stored_answer(conn: AsyncConnection, verification_id: str) -> dict[str, Any] | None:
    stmt = select(verifications.c.answer).where(verifications.c.id == verification_id)
    value = (await conn.execute(stmt)).scalar_one_or_none()
    return value if isinstance(value, dict) else None


async def upsert_request(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Store a decided request; a result that arrived first already made the row."""
    stmt = insert_for(conn, verifications).values(**row)
    update = {k: stmt.excluded[k] for k in row if k not in ("id", "created_at")}
    await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))


async def add_shadow_matches(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(matches), list(rows))


async def verification_keys(conn: AsyncConnection, verification_id: str) -> dict[str, Any] | None:
    """What a result event needs of its verification: counter keys and current status."""
    cols = verifications.c
    stmt = select(
        cols.status,
        cols.requested_at,
        cols.number,
        cols.country,
        cols.calling_code,
        cols.reference,
        cols.app_key,
        cols.method,
    ).where(cols.id == verification_id)
    found = (await conn.execute(stmt)).mappings().one_or_none()
    return dict(found) if found is not None else None


async def upsert_result(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Record a result; a late PENDING never overwrites a final status."""
    stmt = insert_for(conn, verifications).values(**row)
    current = verifications.c
    keep_final = (stmt.excluded.status == PENDING) & current.status.is_not(None)
    update: dict[str, Any] = {
        name: case((keep_final, current[name]), else_=stmt.excluded[name])
        for name in ("status", "status_reason", "status_source", "result_at")
    }
    for name in ("method", "number", "reference", "custom"):
        update[name] = case((current[name].is_(None), stmt.excluded[name]), else_=current[name])
    await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))


async def upsert_delivery(conn: AsyncConnection, row: dict[str, Any]) -> None:
    stmt = insert_for(conn, verifications).values(**row)
    update = {
        "sms_result": stmt.excluded.sms_result,
        "sms_delivered_at": stmt.excluded.sms_delivered_at,
    }
    await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))


def verification_stub(verification_id: str, now: datetime) -> dict[str, Any]:
    return {"id": verification_id, "created_at": now, "shadow_deny": False, "degraded": False}
