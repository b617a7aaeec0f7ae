"""Answering every request event within `decision_deadline_ms`, and losing nothing, while
the database is slow or away: the deadline, the fallback, the breaker, the spool and replay.

The deadline. `Decider.decide` (intake/decide.py) runs the decision as a task and waits
for it for `budget` (the deadline less RESERVE, at least half of it) less the time the
event queued since it was received; the reserve pays for answering without the database.

A late decision. When the wait ends without an answer (the deadline, or a failure other
than a lost connection), the decision's `late` flag is set and Sinch gets the configured
fallback action, written to the spool (a `decision` entry, not degraded) before the
answer goes out. The decision task is not cancelled (that would cost its connection
mid-statement): it runs on, sees `late` before storing and stores nothing, so the
spooled fallback is what gets stored. The attempt may be counted already (on SQLite its
counts roll back), so a replayed fallback is not counted. Shutdown and `Intake.drain`
wait for late decisions to finish.

The breaker. A decision or store that failed with a lost or refused connection opens it
(`trip`, `down`); a timeout alone does not (a saturated process times out too): it asks
for a probe (`suspect`), and a failed probe opens it. While down, request events are
decided from the last loaded policy and counters in this process (LocalDecider; in
`fallback` outage mode, or before any policy loaded, the fallback), spooled as degraded
`decision` entries, then answered; other callbacks are spooled and answered as if stored.
While the spool holds entries of a verification, that verification's later callbacks join
its tail, so its events reach the database in the order they came; other verifications'
callbacks go straight to the database (a spool that every callback joined would, under
load, grow faster than replay drains it). A callback whose store is merely slow (past
`store_deadline_ms`) is spooled too; the slow store runs on (awaited at shutdown) and, if
it succeeds, the entry's replay is a duplicate.

The probe. A supervisor task probes (`SELECT 1` from a thread of its own, recovery.Prober)
every `outage_probe_interval_ms` while down, and at once when asked. When the database
answers it waits for late work to give its connections back, replaces the pools, forgets
the local counters and closes the breaker. While up it replays the spool on every tick
that finds entries (writing one while up kicks a tick; `Intake.drain` replays at once).

Replay (replay.py) writes entries oldest first, one replay at a time; an entry leaves the
spool once its transaction committed, and the inbox's dedupe keys make a repeat harmless.
A degraded decision is stored marked so and counted then (the database never saw it).
A request admission shed was spooled with only what was received and what Sinch was told
(past capacity most answers are those, and their CPU is the admitted decisions' loss):
replay derives its facts and fallback decision, and stores what the old entry held.
An entry that keeps failing is parked; an outage error stops the replay and trips.

Supersede. A late decision may already be storing when its deadline passes: it is then
stored, while Sinch was told the fallback. Replaying that fallback finds the request's
inbox claim taken; when the claim is this same delivery's (same received_at), the stored
verification is overwritten with the fallback, so the database keeps what Sinch was told.
A claim by another delivery (a redelivery) wins: its answer was the one stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.decision import Decision
from app.rules.facts import Facts
from app.services.admission import QUIET_AFTER
from app.services.intake.answers import build_answer
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.reporting import Reporter
from app.services.resilience.entries import (
    CALLBACK,
    DECISION,
    SpooledDecision,
    delivery_to_json,
    shed_entry,
)
from app.services.resilience.errors import is_outage
from app.services.resilience.local import LocalDecider
from app.services.resilience.replay import Replayer
from app.services.resilience.shed import ShedReport
from app.settings import Settings
from app.sinch.events import VerificationRequestEvent
from app.store import recovery
from app.store.spool import Spool
from app.store.tasks import retrieve_exception

log = structlog.get_logger()
RESERVE = 0.1  # seconds of the deadline kept for deciding locally and writing the spool


def decision_budget(deadline_ms: int) -> float:
    """Seconds a decision may take: the deadline less RESERVE, at least half of it."""
    deadline = deadline_ms / 1000
    return max(deadline - RESERVE, deadline / 2)


class Outage:
    def __init__(
        self,
        *,
        settings: Settings,
        engines: list[AsyncEngine],
        spool: Spool,
        local: LocalDecider,
        replayer: Replayer,
        prober: recovery.Prober,
        reporter: Reporter,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.local = local
        self._replayer = replayer
        self.admission = replayer.admission  # replay waits while it is pressed
        self._engines = engines
        self._prober = prober
        self._reporter = reporter
        self._metrics = reporter.metrics
        self.down = False
        self.budget = decision_budget(settings.decision_deadline_ms)
        self.store_budget = settings.store_deadline_ms / 1000
        self._interval = settings.outage_probe_interval_ms / 1000
        self._kick = asyncio.Event()
        self._check = False
        self._stopping = False
        self._replaying = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._late: set[asyncio.Future[Reply]] = set()
        self._fallback = Decision.fallback(settings.fallback_action)
        self._shed = ShedReport(metrics=self._metrics, spool_depth=lambda: self.spool.depth)
        # The deny, whatever the event: built and encoded once (`shed`).
        deny = Decision.fallback("deny")
        self._deny = build_answer(method="", decision=deny, defaults=settings.answers)
        self._deny_bytes = to_json(self._deny)

    async def start(self) -> None:
        """Open the spool; what a previous run left in it is replayed in the background."""
        await self.spool.open()
        self._metrics.spool_depth.set(self.spool.depth)
        if self.spool.depth:
            log.warning("spool.found", depth=self.spool.depth)
        self._task = asyncio.create_task(self._supervise(), name="verifyguard-outage")
        self._kick.set()

    async def close(self, *, flush_within: float = 10.0) -> None:
        """Stop probing (a running probe or replay may finish), a last replay, close the spool."""
        if self._task is None:
            return
        self._stopping = True
        self._kick.set()
        self._shed.flush()
        # Late stores hold connections: they return them before the pools close.
        pending: set[asyncio.Future[Any]] = {self._task, *self._late}
        await asyncio.wait(pending, timeout=flush_within)
        self._task.cancel()
        self._task = None
        if self.spool.depth and await self._prober.ping(within=1.0):
            with contextlib.suppress(Exception):
                if self.down:
                    await self._recover()
                await asyncio.wait_for(self.replay(), flush_within)
        if self.spool.depth:
            log.warning("spool.left", depth=self.spool.depth)
        await self.spool.close()
        await self._prober.close()

    def trip(self, error: BaseException, operation: str) -> None:
        self._metrics.database_errors.labels(operation).inc()
        if not self.down:  # open the breaker; the probe closes it
            self.down = True
            self._metrics.database_up.set(0)
            log.warning("database.down", operation=operation, error=repr(error)[:300])
        self._kick.set()

    def suspect(self) -> None:
        """Something was slow: probe now (a failed probe opens the breaker)."""
        self._check = True
        self._kick.set()

    async def decide(
        self, delivery: Delivery, event: VerificationRequestEvent, facts: Facts, started: float
    ) -> Reply:
        """While down: decide from memory, spool, then answer."""
        decision, facts = await self.local.decide(facts)
        outcome = "fallback" if decision.mode == "fallback" else "degraded"
        if outcome == "fallback":
            self._metrics.fallbacks.labels("outage").inc()
        else:
            self._metrics.degraded.inc()
        reply = await self._answer(delivery, event, facts, decision, started, degraded=True)
        self._reporter.decision_made(event.id, decision, started, outcome=outcome)
        return reply

    @property
    def sheds_unread(self) -> bool:
        """Whether a request event admission refuses is answered before it is parsed
        (`shed`): while the database is up and the fallback is a deny, the same answer
        whatever the event (an allow carries its method's settings)."""
        return not self.down and self.settings.fallback_action == "deny"

    async def shed(self, delivery: Delivery, verification_id: str, started: float) -> Reply:
        """A request event admission refused before it was parsed (intake/dispatch.py): the
        deny, spooled with the body as received (replay parses it: replay.py), then answered
        from bytes encoded once; counted, and logged once an interval (shed.py).

        Past capacity most answers are these, and each one's CPU is taken from the
        decisions admitted: `bench.request_cpu --shed` (no HTTP server: ~160k of it is the
        bench, the ASGI side and the signature), 536k instructions an answer when it was
        parsed first, its answer built and encoded, its entry encoded by `json.dumps`, and
        reported by a log line and five metric updates; 295k so."""
        decision = self._current_fallback()  # a deny (`sheds_unread`)
        elapsed = (time.perf_counter() - started) * 1000
        entry = shed_entry(delivery, self._deny_bytes, elapsed, decision.action)
        spooled = False
        try:
            await self.spool.append_encoded(DECISION, entry, key=verification_id)
            spooled = True
        except Exception:
            # Never a 5xx to Sinch on a request event, even when the disk fails us too.
            log.exception("spool.write_failed")
        # No replay kicked: it waits while requests are shed (`_append`'s note).
        self._shed.answered(verification_id, decision, started, spooled=spooled)
        return Reply(body=self._deny.copy(), encoded=self._deny_bytes)

    async def fallback(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        facts: Facts | None,
        started: float,
        *,
        cause: str,
    ) -> Reply:
        """A missed deadline or an internal failure: the fallback, spooled, then answered.

        `facts` None (a request admission shed after its parse: it was not plainly one, or
        the fallback is an allow, `shed`): spooled as received, its facts derived on replay
        (entries.py), and reported as `shed` reports."""
        decision = self._current_fallback()
        if facts is None:
            reply = await self._answer(delivery, event, None, decision, started, degraded=False)
            self._shed.answered(event.id, decision, started, spooled=False)  # `_answer`'s
            return reply
        self._metrics.fallbacks.labels(cause).inc()
        reply = await self._answer(delivery, event, facts, decision, started, degraded=False)
        self._reporter.decision_made(event.id, decision, started, outcome="fallback")
        return reply

    def flush_report(self) -> None:
        """The shed answers not yet logged and counted (shed.py): now."""
        self._shed.flush()

    def _current_fallback(self) -> Decision:
        decision = self._fallback
        if decision.action != self.settings.fallback_action:  # settings may be changed
            decision = self._fallback = Decision.fallback(self.settings.fallback_action)
        return decision

    async def keep(
        self,
        delivery: Delivery,
        key: str | None,
        store: Callable[[], Awaitable[Reply]],
        spooled: Reply,
    ) -> tuple[Reply, bool]:
        """Store a non-request callback, or spool it (and answer `spooled`) when we cannot.

        While the spool holds entries of the same verification (`key`), it joins their
        tail, so a verification's events reach the database in the order they came; the
        others are stored at once.
        """
        if self.down or self.spool.holds(key):
            await self._append(CALLBACK, {"delivery": delivery_to_json(delivery)}, key)
            return spooled, True
        work = asyncio.ensure_future(store())
        try:
            return await asyncio.wait_for(asyncio.shield(work), self.store_budget), False
        except TimeoutError:
            if work.done() and work.exception() is None:
                return work.result(), False  # finished as the wait ended
            failure = work.exception() if work.done() else None
        except Exception as exc:
            failure = exc
        if failure is not None and not is_outage(failure):
            raise failure
        if failure is not None:
            self.trip(failure, "callback")
        else:  # slow, not (yet) failed: probe, and let the late store finish or fail
            self._late.add(work)
            work.add_done_callback(self._late.discard)
            work.add_done_callback(retrieve_exception)
            self.suspect()
        await self._append(CALLBACK, {"delivery": delivery_to_json(delivery)}, key)
        return spooled, True

    async def flush(self) -> None:
        if not self.down and self.spool.depth:
            await self.replay()

    async def replay(self) -> int:
        """Write the spool to the database now (one replay at a time; flush() unless down)."""
        async with self._replaying:
            try:
                return await self._replayer.run()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.trip(exc, "replay")
                return 0

    async def _answer(
        self,
        delivery: Delivery,
        event: VerificationRequestEvent,
        facts: Facts | None,
        decision: Decision,
        started: float,
        *,
        degraded: bool,
    ) -> Reply:
        answer = build_answer(
            method=event.method, decision=decision, defaults=self.settings.answers
        )
        elapsed = (time.perf_counter() - started) * 1000
        entry = SpooledDecision(delivery, facts, decision, answer, elapsed, degraded)
        try:
            await self._append(DECISION, entry.to_json(), event.id)
        except Exception:
            # Never a 5xx to Sinch on a request event, even when the disk fails us too.
            log.exception("spool.write_failed")
        return Reply(body=answer)

    async def _append(self, kind: str, payload: dict[str, Any], key: str | None) -> None:
        await self.spool.append(kind, payload, key=key)
        self._metrics.spool_writes.labels(kind).inc()
        self._metrics.spool_depth.set(self.spool.depth)
        # Not while request events queue or were shed a moment ago: replay would wait for
        # them anyway, and a wake-up per shed answer cost as much as a tenth of it. The
        # supervisor looks again once that has passed (QUIET_AFTER).
        if not self.down and not self.admission.pressed:
            self._kick.set()

    async def _supervise(self) -> None:
        while not self._stopping:
            wait = self._interval
            if self.spool.depth and not self.down:  # entries replay left for live requests
                wait = min(wait, QUIET_AFTER)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), wait)
            self._kick.clear()
            if self._stopping:
                return
            try:
                await self._tick()
            except Exception:
                log.exception("outage.supervisor_failed")

    async def _tick(self) -> None:
        if self.down or self._check:
            self._check = False
            if not await self._prober.ping(within=max(0.2, min(1.0, self._interval))):
                if not self.down:
                    self.trip(TimeoutError("the database probe failed"), "probe")
                return
            if self.down:
                await self._recover()
        if self.spool.depth and (replayed := await self.replay()):
            log.info("spool.replayed", entries=replayed, depth=self.spool.depth)

    async def _recover(self) -> None:
        """Fresh pools (old connections died), once late work gave its connections back."""
        for engine in self._engines:
            await recovery.returned(engine, within=5.0)
            with contextlib.suppress(Exception):
                await engine.dispose()
        self.local.counters.clear()
        self.down = False
        self._metrics.database_up.set(1)
        log.warning("database.up", spool_depth=self.spool.depth)
