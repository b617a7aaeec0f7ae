"""Helpers for audit tests: tokens and verification rows inserted straight into the store."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.tokens import issue_token
from app.store.models import AuditLogRow, VerificationMatchRow, VerificationRow

ADMIN_TOKEN = "admin-bootstrap-token-for-tests"
BASE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
_ids = itertools.count(1)


async def auditor_token(engine: AsyncEngine, name: str = "alice") -> str:
    async with engine.begin() as conn:
        _, token = await issue_token(conn, name=name, role="auditor", now=datetime.now(UTC))
    return token


def row(**over: Any) -> dict[str, Any]:
    """A decided verification; every field can be overridden."""
    at = over.pop("requested_at", BASE)
    values: dict[str, Any] = {
        "id": f"v-{next(_ids):06d}",
        "app_key": "app-one",
        "method": "sms",
        "number": "+46701234233",
        "country": "SE",
        "calling_code": 46,
        "number_type": "mobile",
        "number_valid": True,
        "price_amount": 0.05,
        "price_currency": "EUR",
        "reference": None,
        "requested_at": at,
        "action": "allow",
        "reason": "default",
        "decided_by": "default",
        "shadow_deny": False,
        "degraded": False,
        "decided_at": at,
        "status": None,
        "created_at": at or BASE,
    }
    values.update(over)
    return values


async def insert_rows(engine: AsyncEngine, rows: list[dict[str, Any]]) -> list[str]:
    keys = sorted({key for r in rows for key in r})
    full = [{key: r.get(key) for key in keys} for r in rows]
    for r in full:
        r["shadow_deny"] = bool(r["shadow_deny"])
        r["degraded"] = bool(r["degraded"])
    async with engine.begin() as conn:
        await conn.execute(insert(VerificationRow), full)
    return [r["id"] for r in rows]


async def insert_match(engine: AsyncEngine, verification_id: str, rule: str, action: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(VerificationMatchRow).values(
                verification_id=verification_id,
                rule_name=rule,
                action=action,
                reason=f"{rule}_reason",
                matched_at=BASE,
            )
        )


async def audit_log(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        stmt = select(AuditLogRow.__table__).order_by(AuditLogRow.id)
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
