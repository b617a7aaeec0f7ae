"""Result, SMS-delivered and unknown events: stored once, joined to their verification."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.aggregates import Aggregator
from app.services.intake.batching import Batcher
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.records import callback_row
from app.services.intake.scope import Scope
from app.services.policy.cache import PolicyCache
from app.sinch.events import (
    RESULT_EVENT,
    SMS_DELIVERED_EVENT,
    VerificationResultEvent,
    VerificationSmsDeliveredEvent,
)
from app.store import inbox, stats_rollup
from app.store.pg_outcomes import DeliveryWrite, ResultWrite, Write, Written
from app.store.rows import DeliveryRow, ResultRow, VerificationKeys

log = structlog.get_logger()
SUCCESSFUL = "SUCCESSFUL"


@dataclass(kw_only=True, eq=False, slots=True)
class Outcomes:
    """Stores results, delivery receipts and unknown events; credits successes to counters."""

    writes: Scope
    """Where an event is stored: one transaction (on SQLite shared: group_commit.py)."""
    credit: Scope | None
    """Where a success is credited to its counters; None: in the store's own transaction
    (SQLite, counters inside). On PostgreSQL autocommit statements, so a hot key's counter
    row is not locked for a whole transaction."""
    policies: PolicyCache
    aggregator: Aggregator
    batch: Batcher[Write, Written] | None = None
    """On PostgreSQL: results and receipts that arrive together share one transaction and
    its multi-row statements (store/pg_outcomes.py); their successes are credited together
    too, after it (`credit`)."""
    _credits: Batcher[VerificationKeys, None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.batch is not None and self.credit is not None:
            self._credits = Batcher(
                self._credit_all, name="verifyguard-credits", split=self.batch.split
            )

    async def close(self) -> None:
        """At shutdown, after the last callback: what is queued is written."""
        for batcher in (self.batch, self._credits):
            if batcher is not None:
                await batcher.close()

    async def result(self, delivery: Delivery, event: VerificationResultEvent) -> Reply:
        key = f"{RESULT_EVENT}:{event.id}:{event.status}:{event.reason or ''}:{event.source or ''}"
        claim = callback_row(
            delivery, 200, event=RESULT_EVENT, verification_id=event.id, dedupe_key=key
        )
        success = event.status == SUCCESSFUL
        if self.batch is not None:
            row = result_fields(event, delivery.received_at)
            written = await self.batch.submit(ResultWrite(claim, row))
            if not written.stored:
                return Reply(duplicate=True)
            if success and _first_success(written.known):
                await self._credit_later(written.known)
            return Reply()

        async def store(conn: AsyncConnection) -> tuple[bool, VerificationKeys | None]:
            if await inbox.claim_callback(conn, claim) is None:
                return False, None
            known = await inbox.verification_keys(conn, event.id)
            await inbox.upsert_result(conn, result_fields(event, delivery.received_at))
            if known is not None:
                await stats_rollup.mark_late(conn, known["requested_at"])
            if self.credit is None and success and _first_success(known):
                await self._credit(conn, known)
            return True, known

        stored, known = await self.writes.run(store)
        if not stored:
            return Reply(duplicate=True)
        if self.credit is not None and success and _first_success(known):
            await self.credit.run(lambda conn: self._credit(conn, known))
        return Reply()

    async def _credit(self, conn: AsyncConnection, known: VerificationKeys | None) -> None:
        assert known is not None
        policy = await self.policies.current(conn)
        await self.aggregator.succeeded(conn, policy, known)

    async def _credit_later(self, known: VerificationKeys | None) -> None:
        assert known is not None
        assert self._credits is not None
        await self._credits.submit(known)

    async def _credit_all(self, known: Sequence[VerificationKeys]) -> list[None]:
        """Successes stored together, credited in one statement (autocommit: a hot key's
        counter row is locked only while it runs)."""
        assert self.credit is not None

        async def credit(conn: AsyncConnection) -> None:
            policy = await self.policies.current(conn)
            await self.aggregator.succeeded_many(conn, policy, known)

        await self.credit.run(credit)
        return [None] * len(known)

    async def delivered(self, delivery: Delivery, event: VerificationSmsDeliveredEvent) -> Reply:
        key = f"{SMS_DELIVERED_EVENT}:{event.id}:{event.sms_result}"
        now = delivery.received_at
        row = DeliveryRow(
            id=event.id, created_at=now, sms_result=event.sms_result, sms_delivered_at=now
        )
        claim = callback_row(
            delivery, 200, event=SMS_DELIVERED_EVENT, verification_id=event.id, dedupe_key=key
        )
        if self.batch is not None:
            written = await self.batch.submit(DeliveryWrite(claim, row))
            return Reply() if written.stored else Reply(duplicate=True)

        async def store(conn: AsyncConnection) -> bool:
            if await inbox.claim_callback(conn, claim) is None:
                return False
            await inbox.upsert_delivery(conn, row)
            return True

        return Reply() if await self.writes.run(store) else Reply(duplicate=True)

    async def unknown(self, delivery: Delivery, payload: dict[str, Any], event: str) -> Reply:
        """Never fail on an event type we do not know: keep it and say 200."""
        digest = hashlib.sha256(delivery.body).hexdigest()[:32]
        raw_id = payload.get("id")
        ident = raw_id if isinstance(raw_id, str) else ""
        dedupe_key = f"{event[:64]}:{ident[:128]}:{digest}"
        row = callback_row(
            delivery, 200, event=event, verification_id=ident or None, dedupe_key=dedupe_key
        )

        async def claim(conn: AsyncConnection) -> bool:
            return await inbox.claim_callback(conn, row) is None

        duplicate = await self.writes.run(claim)
        log.info("callback.unknown_event", event_type=event[:64])
        return Reply(duplicate=duplicate)


REFERENCE_CHARS = 1024


def _first_success(known: VerificationKeys | None) -> bool:
    """Credit conversions once, and only for attempts we decided (we know their keys)."""
    return known is not None and known["status"] != SUCCESSFUL and known["requested_at"] is not None


def result_fields(event: VerificationResultEvent, now: datetime) -> ResultRow:
    return ResultRow(
        id=event.id,
        created_at=now,
        method=event.method,
        number=event.identity.endpoint if event.identity else None,
        # Sinch allows 4096 characters, the column 1024 (the raw body keeps them all).
        reference=event.reference[:REFERENCE_CHARS] if event.reference else None,
        custom=event.custom,
        status=event.status,
        status_reason=event.reason,
        status_source=event.source,
        result_at=now,
    )
