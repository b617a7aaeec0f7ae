"""Deciding a VerificationRequestEvent: facts, counters, the engine, then one transaction.

Counters run on autocommit statements first (no lock held across the request); the
inbox claim, the verification row and shadow matches are then written in one transaction
that commits before the answer leaves. A redelivery's count is taken back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.decision import Decision
from app.rules.engine import CompiledPolicy, evaluate
from app.rules.facts import Facts, derive_facts
from app.services.aggregates import Aggregator, Counting, counts_allowed
from app.services.answers import build_answer
from app.services.deliveries import Delivery, Reply
from app.services.policy import PolicyCache
from app.services.records import callback_row, fallback_row, match_rows, request_row
from app.settings import Settings
from app.sinch.events import REQUEST_EVENT, VerificationRequestEvent
from app.store import inbox

log = structlog.get_logger()


class Decider:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        counting: Counting,
        settings: Settings,
        policies: PolicyCache,
        aggregator: Aggregator,
    ) -> None:
        self._engine = engine
        self._counting = counting
        self._settings = settings
        self._policies = policies
        self._aggregator = aggregator
        self._deadline = settings.decision_deadline_ms / 1000
        self._background: set[asyncio.Task[None]] = set()

    async def decide(self, delivery: Delivery, event: VerificationRequestEvent) -> Reply:
        """The answer within the deadline; on any failure, the configured fallback.

        A late decision is not cancelled mid-statement (that would cost the connection):
        it runs on, sees it is late before storing, and the fallback is stored instead.
        """
        started = time.perf_counter()
        late = asyncio.Event()
        work = asyncio.create_task(self._decide(delivery, event, started, late))
        try:
            return await asyncio.wait_for(asyncio.shield(work), self._deadline)
        except Exception as exc:
            late.set()
            log.warning("decision.fallback", verification_id=event.id, error=repr(exc))
            return self._fallback(delivery, event, started, after=work)

    async def _decide(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        started: float,
        late: asyncio.Event,
    ) -> Reply:
        async with self._counting() as conn:
            policy = await self._policies.current(conn)
            facts = _facts(event, delivery)
            facts = facts.with_aggregates(await self._aggregator.observe(conn, policy, facts))
            decision = evaluate(policy, facts)
            answer = build_answer(
                method=event.method, decision=decision, defaults=self._settings.answers
            )
            # On failure nothing is settled: in SQLite the transaction rolls back the counts;
            # elsewhere the attempt stays counted, and pending (as allowed) until it ages out.
            if late.is_set():
                raise TimeoutError("decided after the deadline")
            reply = await self._store(conn, delivery, event, facts, decision, answer, started)
            await self._settle(conn, policy, facts, decision, reply)
        if not reply.duplicate:
            log.info(
                "decision.made",
                verification_id=event.id,
                action=decision.action,
                reason=decision.reason,
                rule=decision.rule,
            )
        return reply

    async def _store(
        self,
        conn: AsyncConnection,
        delivery: Delivery,
        event: VerificationRequestEvent,
        facts: Facts,
        decision: Decision,
        answer: dict[str, Any],
        started: float,
    ) -> Reply:
        elapsed = (time.perf_counter() - started) * 1000
        callback_id = await inbox.store_decision(
            conn,
            claim=callback_row(delivery, 200, dedupe_key=f"{REQUEST_EVENT}:{event.id}"),
            verification=request_row(
                event, delivery, facts, decision, answer, callback_id=None, elapsed_ms=elapsed
            ),
            shadow=match_rows(event.id, decision, delivery.received_at),
        )
        if callback_id is None:
            return await self._repeat(conn, event.id)
        return Reply(body=answer)

    async def _settle(
        self,
        conn: AsyncConnection,
        policy: CompiledPolicy,
        facts: Facts,
        decision: Decision,
        stored: Reply,
    ) -> None:
        """Release this attempt's counts: allowed if stored as allowed; undone if a repeat."""
        if stored.duplicate:
            await self._aggregator.forget(conn, policy, facts)
        elif counts_allowed(policy):
            allowed = decision.action == "allow"
            await self._aggregator.settle(conn, policy, facts, allowed=allowed)

    async def _repeat(self, conn: AsyncConnection, verification_id: str) -> Reply:
        answer = await inbox.stored_answer(conn, verification_id)
        if answer is None:
            # Claimed but never decided: the first delivery's answer was the fallback.
            answer = {"action": self._settings.fallback_action}
        return Reply(body=answer, duplicate=True)

    def _fallback(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        started: float,
        *,
        after: asyncio.Task[Reply],
    ) -> Reply:
        decision = Decision.fallback(self._settings.fallback_action)
        answer = build_answer(
            method=event.method, decision=decision, defaults=self._settings.answers
        )
        elapsed = (time.perf_counter() - started) * 1000
        task = asyncio.create_task(
            self._record_fallback(delivery, event, decision, answer, elapsed, after)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return Reply(body=answer)

    async def _record_fallback(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        decision: Decision,
        answer: dict[str, Any],
        elapsed: float,
        after: asyncio.Task[Reply],
    ) -> None:
        """Record what Sinch was told, once the late decision (if any) has finished."""
        await asyncio.gather(after, return_exceptions=True)
        try:
            async with self._engine.begin() as conn:
                row = callback_row(delivery, 200, dedupe_key=f"{REQUEST_EVENT}:{event.id}")
                callback_id = await inbox.claim_callback(conn, row)
                record = fallback_row(event, delivery, decision, answer, callback_id, elapsed)
                await inbox.upsert_request(conn, record)
        except Exception:
            log.exception("decision.fallback_store_failed", verification_id=event.id)

    async def drain(self) -> None:
        """Wait for background writes (fallback records) before shutdown."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _facts(event: VerificationRequestEvent, delivery: Delivery) -> Facts:
    price, rate = event.price, event.rate
    return derive_facts(
        method=event.method,
        endpoint=event.identity.endpoint,
        price_amount=price.amount if price else None,
        price_currency=price.currency_id if price else None,
        rate_amount=rate.amount if rate else None,
        rate_currency=rate.currency_id if rate else None,
        reference=event.reference,
        custom=event.custom,
        application=delivery.app_key,
        now=delivery.received_at,
    )
