"""Replay: the spool written to the database, oldest first, each entry exactly once.

The inbox dedupe keys make an entry idempotent, and an entry leaves the spool only after
its transaction committed, so a crash mid-replay means replaying it again, harmlessly.

Where a spooled decision is written is the composition root's choice (`decisions`). On
SQLite it is the writer's group commit: there `together` entries are replayed at once and
share its transactions, on its thread, after the request events queued (store/
group_commit.py). Each was a transaction of its own on the pool's one connection, its
statements hops through the event loop while request events waited for the writer, and
its hold taken for a decision's by admission, which then shed more: more to replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.metrics import Metrics
from app.services.admission import Admission
from app.services.aggregates import Aggregator
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.event_facts import event_facts
from app.services.intake.records import callback_row, match_rows, request_row
from app.services.policy.cache import PolicyCache
from app.services.resilience.entries import DECISION, SpooledDecision, delivery_from_json
from app.services.resilience.errors import is_outage
from app.sinch.events import REQUEST_EVENT, VerificationRequestEvent
from app.store import inbox, recovery, stats_rollup
from app.store.rows import RequestRow
from app.store.spool import Spool, SpoolEntry

if TYPE_CHECKING:  # routing imports the lanes, which import resilience
    from app.services.intake.routing import Route

log = structlog.get_logger()
BATCH = 200
TOGETHER = 32  # entries replayed at once where `decisions` batches them (SQLite)
ATTEMPTS = 3
T = TypeVar("T")


class Callbacks(Protocol):
    """Routes and stores a callback as intake would have (intake/routing.py's Router)."""

    def route(self, delivery: Delivery, *, answered: int = 400) -> Route: ...

    async def store(self, delivery: Delivery) -> Reply: ...


class Scope(Protocol):
    """Where a spooled decision's statements run (intake/scope.py's Scope)."""

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...


@dataclass(kw_only=True, eq=False, slots=True)
class Replayer:
    """Writes the spool to the database, oldest first (see outage.py for when)."""

    spool: Spool
    metrics: Metrics
    callbacks: Callbacks
    decisions: Scope
    """Where a spooled decision is written: a transaction (SQLite: the group commit's)."""
    policies: PolicyCache
    aggregator: Aggregator
    admission: Admission
    together: int = 1
    """Entries replayed at once (each waits for the one before it where that is 1)."""
    _failures: dict[int, int] = field(default_factory=dict, init=False)

    async def run(self) -> int:
        """Replay until the spool is empty, an entry fails, or request events queue (they
        come first: services/admission.py); raises on an outage error."""
        replayed = 0
        while not self.admission.pressed and (batch := await self.spool.head(BATCH)):
            done: list[int] = []
            try:
                for start in range(0, len(batch), self.together):
                    if self.admission.pressed:
                        return replayed + len(done)
                    entries = batch[start : start + self.together]
                    stored = await self._attempt_all(entries)
                    done += stored
                    if len(stored) < len(entries):
                        return replayed + len(done)
            finally:
                if done:
                    await self.spool.remove(done)
                    self.metrics.spool_depth.set(self.spool.depth)
            replayed += len(done)
        return replayed

    async def _attempt_all(self, entries: list[SpoolEntry]) -> list[int]:
        """Replay `entries` at once; the seqs of those stored up to the first that was not
        (the rest stay, to be replayed again: a duplicate then). An outage error raises."""
        outcomes = await asyncio.gather(*map(self._attempt, entries), return_exceptions=True)
        stored: list[int] = []
        for entry, outcome in zip(entries, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            if not outcome:
                break
            stored.append(entry.seq)
        return stored

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
        reply = await self.callbacks.store(delivery_from_json(entry.payload["delivery"]))
        return "duplicate" if reply.duplicate else "stored"

    async def _decision(self, spooled: SpooledDecision) -> str:
        delivery, decision = spooled.delivery, spooled.decision
        facts = spooled.facts
        if facts is None:  # shed, maybe before its parse: routed now, as it would have been
            route = self.callbacks.route(delivery, answered=200)
            if route.request is None:
                return await self._refused(route, spooled)
            event = route.request
            # What the decision would have started from (decide.py).
            facts = event_facts(event, application=delivery.app_key, now=delivery.received_at)
        else:
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

        async def store(conn: AsyncConnection) -> str:
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

        return await self.decisions.run(store)

    async def _refused(self, route: Route, spooled: SpooledDecision) -> str:
        """A body shed before its parse that is no valid request event after all (a field
        missing or malformed; rarer still, another event): stored as its route stores it,
        an invalid one raw with its error code, as answered (200, the fallback: Sinch's
        answer was not to wait for the parse). Nothing was decided."""
        assert route.store is not None
        await route.store()
        error = route.reply.error
        log.warning(
            "spool.shed_not_a_request",
            verification_id=route.verification_id,
            event_type=route.event,
            error_code=None if error is None else error.code,
            answered=spooled.answer.get("action"),
        )
        return "invalid" if route.event == "invalid" else "stored"

    async def _supersede(
        self, conn: AsyncConnection, key: str, delivery: Delivery, row: RequestRow
    ) -> None:
        """This delivery's late decision was stored after all: keep what Sinch was told."""
        found = await recovery.claimed(conn, key)
        if found is not None and found[1] == delivery.received_at:
            await inbox.upsert_request(conn, row, callback_id=found[0])
            await stats_rollup.mark_late(conn, row.requested_at)
