"""Replay: the spool written to the database, oldest first, each entry exactly once.

The inbox dedupe keys make an entry idempotent, and an entry leaves the spool only after
its transaction committed, so a crash mid-replay means replaying it again, harmlessly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.metrics import Metrics
from app.services.admission import Admission
from app.services.aggregates import Aggregator, Counting
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.records import callback_row, match_rows, request_row
from app.services.policy.cache import PolicyCache
from app.services.resilience.entries import DECISION, SpooledDecision, delivery_from_json
from app.services.resilience.errors import is_outage
from app.sinch.events import REQUEST_EVENT, VerificationRequestEvent
from app.store import inbox, recovery, stats_rollup
from app.store.rows import RequestRow
from app.store.spool import Spool, SpoolEntry

log = structlog.get_logger()
BATCH = 200
ATTEMPTS = 3
Store = Callable[[Delivery], Awaitable[Reply]]  # stores a callback as intake would


@dataclass(kw_only=True, eq=False, slots=True)
class Replayer:
    """Writes the spool to the database, oldest first (see outage.py for when)."""

    spool: Spool
    metrics: Metrics
    store: Store
    counting: Counting
    policies: PolicyCache
    aggregator: Aggregator
    admission: Admission
    _failures: dict[int, int] = field(default_factory=dict, init=False)

    async def run(self) -> int:
        """Replay until the spool is empty, an entry fails, or request events queue (they
        come first: services/admission.py); raises on an outage error."""
        replayed = 0
        while not self.admission.pressed and (batch := await self.spool.head(BATCH)):
            done: list[int] = []
            try:
                for entry in batch:
                    if self.admission.pressed or not await self._attempt(entry):
                        return replayed + len(done)
                    done.append(entry.seq)
            finally:
                if done:
                    await self.spool.remove(done)
                    self.metrics.spool_depth.set(self.spool.depth)
            replayed += len(done)
        return replayed

    async def _attempt(self, entry: SpoolEntry) -> bool:
        """True once the entry is in the database; a repeatedly failing one is parked."""
        try:
            outcome = await self._apply(entry)
        except Exception as exc:
            if is_outage(exc):
                raise
            failures = self._failures[entry.seq] = self._failures.get(entry.seq, 0) + 1
            log.exception("spool.replay_failed", seq=entry.seq, failures=failures)
            if failures < ATTEMPTS:
                return False
            await self.spool.park(entry, repr(exc))
            self.metrics.spool_parked.inc()
            self.metrics.spool_depth.set(self.spool.depth)
            return False
        self._failures.pop(entry.seq, None)
        self.metrics.spool_replayed.labels(entry.kind, outcome).inc()
        return True

    async def _apply(self, entry: SpoolEntry) -> str:
        if entry.kind == DECISION:
            return await self._decision(SpooledDecision.from_json(entry.payload))
        reply = await self.store(delivery_from_json(entry.payload["delivery"]))
        return "duplicate" if reply.duplicate else "stored"

    async def _decision(self, spooled: SpooledDecision) -> str:
        delivery, facts, decision = spooled.delivery, spooled.facts, spooled.decision
        event = VerificationRequestEvent.model_validate_json(delivery.body)
        row = request_row(
            event,
            delivery,
            facts,
            decision,
            spooled.answer,
            callback_id=None,
            elapsed_ms=spooled.elapsed_ms,
            degraded=spooled.degraded,
        )
        key = f"{REQUEST_EVENT}:{event.id}"
        async with self.counting() as conn:
            stored = await inbox.store_decision(
                conn,
                claim=callback_row(
                    delivery, 200, event=REQUEST_EVENT, verification_id=event.id, dedupe_key=key
                ),
                verification=row,
                shadow=match_rows(event.id, decision, delivery.received_at),
            )
            if stored is None:
                await self._supersede(conn, key, delivery, row)
                return "duplicate"
            if spooled.degraded:  # decided without the database: it was never counted there
                policy = await self.policies.current(conn)
                counted = await self.aggregator.observe(conn, policy, facts)
                await counted.finish(conn, allowed=decision.action == "allow")
        return "stored"

    async def _supersede(
        self, conn: AsyncConnection, key: str, delivery: Delivery, row: RequestRow
    ) -> None:
        """This delivery's late decision was stored after all: keep what Sinch was told."""
        found = await recovery.claimed(conn, key)
        if found is not None and found[1] == delivery.received_at:
            await inbox.upsert_request(conn, row, callback_id=found[0])
            await stats_rollup.mark_late(conn, row.requested_at)
