"""Deciding a VerificationRequestEvent: facts, counters, the engine, then one transaction.

The attempt is counted and its windows read first (aggregates.py), then the inbox claim,
the verification row, its shadow matches and the attempt's settle are stored, durably
before the answer leaves. How those reach the database is the lane's (lanes.py): on
PostgreSQL in batches shared with the request events that arrive together (one counting and
one storing statement per batch; with Redis counters, the Redis script runs, which check
the policy's version there, and one storing statement: redis_batches.py), on SQLite in one
transaction shared likewise, on SQLite with Redis counters on a connection of its own. A
redelivery's count is taken back. The deadline, late decisions and answering without the
database: resilience/outage.py tells it whole.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.decision import Decision
from app.rules.engine import evaluate
from app.rules.facts import Facts
from app.services.admission import Admission, Ticket
from app.services.aggregates import Aggregator
from app.services.baselines import BaselineCache
from app.services.intake.answers import build_answer
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.event_facts import event_facts
from app.services.intake.lanes import Lane, Late
from app.services.intake.records import callback_row, decision_json, match_rows, request_row
from app.services.intake.reporting import Reporter
from app.services.intake.scope import Decisions
from app.services.policy.cache import PolicyCache
from app.services.resilience import Outage
from app.services.resilience.errors import is_outage
from app.settings import Settings
from app.sinch.events import REQUEST_EVENT, VerificationRequestEvent
from app.store import inbox
from app.store.pg_batch_store import StoreItem
from app.store.tasks import retrieve_exception

log = structlog.get_logger()


@dataclass(kw_only=True, eq=False, slots=True)
class Decider:
    """Decides request events within the deadline; built once by the composition root."""

    scope: Decisions
    settings: Settings
    policies: PolicyCache
    aggregator: Aggregator
    outage: Outage
    reporter: Reporter
    admission: Admission
    # Adaptive limits' verified baselines, kept in memory (no statement on this path).
    baselines: BaselineCache = field(default_factory=BaselineCache)
    _late: set[asyncio.Task[Reply]] = field(default_factory=set, init=False)

    def admit(self, delivery: Delivery) -> Ticket | None:
        """Admission's ticket for a request event received as `delivery` (services/
        admission.py); None: answer it with the fallback now. Asked before the event is
        parsed (intake/dispatch.py), or by `decide` if it was not."""
        # The deadline runs from receipt: time spent queueing before this point counts (by
        # the epoch seconds: 1.5k instructions fewer than a datetime's difference).
        queued = time.time() - delivery.received_at.timestamp()
        return self.admission.admit(self.outage.budget - max(0.0, queued))

    async def decide(self, delivery: Delivery, event: VerificationRequestEvent) -> Reply:
        """The answer within the deadline; without the database, from memory or the fallback."""
        if self.outage.down:
            started = time.perf_counter()
            return await self.outage.decide(delivery, event, _facts(event, delivery), started)
        return await self.decide_admitted(delivery, event, self.admit(delivery))

    async def decide_admitted(
        self, delivery: Delivery, event: VerificationRequestEvent, ticket: Ticket | None
    ) -> Reply:
        """`decide`, admission asked already while the database was up (`admit`, before the
        event was parsed: intake/dispatch.py); `ticket` its answer."""
        started = time.perf_counter()
        if ticket is None:
            return await self.outage.fallback(delivery, event, None, started, cause="overload")
        admitted = ticket
        late = asyncio.Event()
        work = asyncio.create_task(self._decide(delivery, event, started, late))
        work.add_done_callback(lambda _: self.admission.release(admitted))
        # Waited for, never cancelled (a late decision still stores what it decided).
        await _until_done(work, admitted.budget)  # less what it waited unread (admission)
        if work.done():
            # Also when it finished as the wait ended (one loop turn ran both): its answer
            # is the one stored and reported, so it is the one Sinch gets.
            exc = work.exception()  # raises CancelledError if it was cancelled (shutdown)
            if exc is None:
                return work.result()
            if not isinstance(exc, Exception):
                raise exc
        else:
            exc = TimeoutError()
        late.set()
        return await self._failed(delivery, event, started, work, exc)

    async def _failed(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        started: float,
        work: asyncio.Task[Reply],
        exc: Exception,
    ) -> Reply:
        """A lost connection opens the breaker; a missed deadline or a bug gets the fallback."""
        self._late.add(work)
        work.add_done_callback(self._late.discard)
        work.add_done_callback(retrieve_exception)  # a late decision failing is expected
        facts = _facts(event, delivery)
        # A timeout is no proof of an outage (a saturated process times out too): the
        # probe, on its own thread and loop, tells a slow database from a busy process.
        if work.done() and is_outage(exc) and not isinstance(exc, TimeoutError):
            self.outage.trip(exc, "decide")
            return await self.outage.decide(delivery, event, facts, started)
        if not work.done() or isinstance(exc, TimeoutError):
            self.outage.suspect()
        log.warning("decision.fallback", verification_id=event.id, error=repr(exc)[:300])
        cause = "error" if work.done() else "deadline"
        return await self.outage.fallback(delivery, event, facts, started, cause=cause)

    async def _decide(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        started: float,
        late: asyncio.Event,
    ) -> Reply:
        work = partial(self._counted_and_stored, delivery, event, started, late)
        done: tuple[Reply, Decision] = await self.scope.decide(work)
        reply, decision = done
        if late.is_set():
            return reply  # Sinch was told something else already; that is what is reported
        if reply.duplicate:
            action = str((reply.body or {}).get("action", ""))
            self.reporter.decision_made(
                event.id, decision, started, outcome="duplicate", action=action
            )
        else:
            self.reporter.decision_made(event.id, decision, started, outcome="decided")
        return reply

    async def _counted_and_stored(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        started: float,
        late: asyncio.Event,
        lane: Lane,
        version: int | None,
    ) -> tuple[Reply, Decision]:
        """Count, decide and store through `lane`; everything a decision does in the database
        (on SQLite with others in one transaction, on the writer's thread: scope.py; on
        PostgreSQL in batches with others: lanes.py). `version`: the live policy version, if
        the transaction read it already."""
        if late.is_set():
            # Answered while queueing for a connection: doing the work now would only
            # hold the connection from requests still in time (on SQLite, the one
            # writer), and under load turn every later request late too.
            raise Late("the deadline passed before a connection was free")
        # One Facts: counting reads none of its aggregates, filled in (as with_aggregates would
        # merge them) once the windows are read, before the engine reads any.
        aggregates: dict[str, float] = {}
        facts = _facts(event, delivery, aggregates)
        counted = await lane.count(self.aggregator, self.policies, facts, version, late)
        baselines = self.baselines.values(counted.policy, facts)
        aggregates.update(counted.values)
        aggregates.update(baselines)
        decision = evaluate(counted.policy, facts)
        answer = build_answer(
            method=event.method, decision=decision, defaults=self.settings.answers
        )
        # On failure nothing is settled: in SQLite the transaction rolls back the counts;
        # elsewhere the attempt stays counted, and held (as allowed) until it ages out.
        if late.is_set():
            raise Late("decided after the deadline")
        allowed = decision.action == "allow"
        settle = counted.settle_in_store(allowed=allowed)
        elapsed = (time.perf_counter() - started) * 1000
        encoded = decision_json(decision, facts)  # every lane stores it encoded
        item = StoreItem(
            claim=callback_row(
                delivery,
                200,
                event=REQUEST_EVENT,
                verification_id=event.id,
                dedupe_key=f"{REQUEST_EVENT}:{event.id}",
            ),
            verification=request_row(
                event,
                delivery,
                facts,
                decision,
                answer,
                callback_id=None,
                elapsed_ms=elapsed,
                document=False,
            ),
            shadow=match_rows(event.id, decision, delivery.received_at),
            settle=settle,
            decision_json=encoded,
        )
        duplicate = await lane.store(item) is None
        if counted.finishes(allowed=allowed, duplicate=duplicate):
            await lane.finish(counted, allowed=allowed, duplicate=duplicate)
        if duplicate:
            return await lane.run(partial(self._repeat, verification_id=event.id)), decision
        return Reply(body=answer), decision

    async def _repeat(self, conn: AsyncConnection, *, verification_id: str) -> Reply:
        answer = await inbox.stored_answer(conn, verification_id)
        if answer is None:
            # Claimed but never decided: the first delivery's answer was the fallback.
            answer = {"action": self.settings.fallback_action}
        return Reply(body=answer, duplicate=True)

    async def drain(self) -> None:
        """Wait for late decisions to finish (what they may still store: resilience/outage.py)."""
        if self._late:
            await asyncio.gather(*self._late, return_exceptions=True)

    async def close(self) -> None:
        """At shutdown, after the last request event: late decisions finish, then the scope."""
        await self.drain()
        await self.scope.close()


async def _until_done(work: asyncio.Task[Reply], seconds: float) -> None:
    """Return once `work` is done or `seconds` have passed, whichever comes first;
    `work` is never cancelled (nor when the caller is). What `asyncio.wait((work,),
    timeout=timeout)` does, with one waiter, one timer and one callback: without its set,
    its checks and its done and pending sets, ~2 µs less per request event (bench/request_cpu
    under callgrind: docs/operations.md)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(seconds, wake)
    work.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        work.remove_done_callback(wake)


def _facts(
    event: VerificationRequestEvent,
    delivery: Delivery,
    aggregates: dict[str, float] | None = None,
) -> Facts:
    return event_facts(
        event, application=delivery.app_key, now=delivery.received_at, aggregates=aggregates
    )
