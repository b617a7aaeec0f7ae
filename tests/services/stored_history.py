"""Verifications stored as the intake stores them, for the baseline tests: each request and
result claims its inbox row and writes its verification in one transaction, through the
store's own functions (a result may come first, late, twice, or PENDING after SUCCESSFUL)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.facts import derive_facts
from app.sinch.events import REQUEST_EVENT, RESULT_EVENT
from app.store import inbox
from app.store.rows import CallbackClaim, RequestRow, ResultRow


def _claim(event: str, ident: str, dedupe: str, at: datetime) -> CallbackClaim:
    return CallbackClaim(
        received_at=at,
        app_key="App-Key",
        event=event,
        verification_id=ident,
        dedupe_key=dedupe,
        signature="valid",
        http_status=200,
        error_code=None,
        content_type="application/json",
        raw_body=b"{}",
    )


async def store_request(
    engine: AsyncEngine, ident: str, number: str, *, at: datetime, stored_at: datetime | None = None
) -> None:
    """A request event received at `at` (its claim's time: `stored_at`, e.g. a replay)."""
    async with engine.begin() as conn:
        await request_in(conn, ident, number, at=at, stored_at=stored_at)


async def request_in(
    conn: AsyncConnection,
    ident: str,
    number: str,
    *,
    at: datetime,
    stored_at: datetime | None = None,
) -> None:
    """`store_request` in the caller's transaction."""
    facts = derive_facts(
        method="sms",
        endpoint=number,
        price_amount=None,
        price_currency=None,
        rate_amount=None,
        rate_currency=None,
        reference="signup",
        custom=None,
        application="App-Key",
        now=at,
    )
    row = RequestRow(
        id=ident,
        created_at=stored_at or at,
        app_key="App-Key",
        method="sms",
        number=facts.number,
        country=facts.country,
        calling_code=facts.calling_code,
        number_type=None,
        number_valid=True,
        price_amount=None,
        price_currency=None,
        rate_amount=None,
        rate_currency=None,
        reference="signup",
        custom=None,
        requested_at=at,
        action="allow",
        reason="default",
        decided_by="default",
        rule_id=None,
        rule_name=None,
        rule_revision=None,
        answer={"action": "allow"},
        decided_at=at,
        decision_ms=1.0,
        decision={},
    )
    claimed = await inbox.claim_callback(conn, _claim(REQUEST_EVENT, ident, ident, at))
    assert claimed is not None
    await inbox.upsert_request(conn, row, callback_id=claimed)


async def store_result(
    engine: AsyncEngine, ident: str, status: str, *, at: datetime, reason: str | None = None
) -> bool:
    """A result event received at `at`; False for a redelivery (nothing written)."""
    async with engine.begin() as conn:
        return await result_in(conn, ident, status, at=at, reason=reason)


async def result_in(
    conn: AsyncConnection, ident: str, status: str, *, at: datetime, reason: str | None = None
) -> bool:
    """`store_result` in the caller's transaction."""
    dedupe = f"{RESULT_EVENT}:{ident}:{status}:{reason or ''}:"
    row = ResultRow(
        id=ident,
        created_at=at,
        method="sms",
        number=None,
        reference=None,
        custom=None,
        status=status,
        status_reason=reason,
        status_source=None,
        result_at=at,
    )
    if await inbox.claim_callback(conn, _claim(RESULT_EVENT, ident, dedupe, at)) is None:
        return False
    await inbox.upsert_result(conn, row)
    return True
