"""Callback intake: route and dispatch every Sinch event; nothing Sinch sends is lost.

Bodies that are not JSON or lack required fields get a 400 but are stored raw (routing.py).
Request events are decided (decide.py); results and receipts are stored (outcomes.py), or
spooled while the database is away (resilience/).
"""

from __future__ import annotations

import time

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import ServiceUnavailable
from app.services.intake.decide import Decider
from app.services.intake.deliveries import Delivery, Reply
from app.services.intake.records import callback_row
from app.services.intake.reporting import Reporter
from app.services.intake.routing import Router, names_request, request_id
from app.services.resilience import Outage
from app.settings import Settings
from app.store import inbox

log = structlog.get_logger()
__all__ = ["Delivery", "Intake", "Reply"]


class Intake:
    """The callback path's entry: each delivery routed, then decided, stored or spooled."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        router: Router,
        decider: Decider,
        outage: Outage,
        reporter: Reporter,
    ) -> None:
        self._engine = engine
        self._settings = settings
        # Bound once: the request-event path looks these up on every callback.
        self._router = router
        self._route = router.route
        self._decide = decider.decide
        self._admit = decider.admit
        self._decide_admitted = decider.decide_admitted
        self._decider = decider
        self._outage = outage
        self._reporter = reporter

    async def start(self) -> None:
        """Open the spool (and replay what a previous run left in it)."""
        await self._outage.start()

    async def reject(self, delivery: Delivery) -> None:
        """Keep a trace of a callback whose signature failed (no decision is made)."""
        self._reporter.rejected(delivery.signature, delivery.app_key)
        if not self._settings.store_rejected_callbacks or self._outage.down:
            return
        row = callback_row(delivery, 401, error_code=delivery.signature, body_limit=4096)
        try:
            async with self._engine.begin() as conn:
                await inbox.add_callback(conn, row)
        except Exception:
            log.exception("callback.reject_store_failed")

    async def receive(self, delivery: Delivery) -> Reply:
        started = time.perf_counter()
        if self._outage.down or not names_request(delivery.body):
            route = self._route(delivery)
            if route.request is not None:
                return await self._decide(delivery, route.request)
        else:
            # Admission before the parse: past capacity a request event plainly one (its id
            # read without parsing it) is shed unread (resilience/outage.py `shed`).
            ticket = self._admit(delivery)
            if ticket is None and self._outage.sheds_unread:
                ident = request_id(delivery.body)
                if ident is not None:
                    return await self._outage.shed(delivery, ident, started)
            route = self._route(delivery)
            if route.request is not None:
                return await self._decide_admitted(delivery, route.request, ticket)
            if ticket is not None:  # invalid after all (Sinch's own error): not decided
                self._decider.admission.release(ticket)
        assert route.store is not None
        spooled = False
        try:
            reply, spooled = await self._outage.keep(
                delivery, route.verification_id, route.store, route.reply
            )
        except Exception:
            # Neither stored nor spooled: ask Sinch to retry.
            log.exception("callback.store_failed")
            reply = Reply(status=503, error=ServiceUnavailable("The event could not be stored."))
        outcome = "spooled" if spooled else _outcome(reply)
        self._reporter.callback_received(
            route.event, route.verification_id, reply.status, outcome, started
        )
        return reply

    async def drain(self) -> None:
        """Let late decisions finish, and write what the spool holds (the app runs on)."""
        await self._decider.drain()
        self._outage.flush_report()
        await self._outage.flush()

    async def close(self) -> None:
        """At shutdown: late decisions finish, a last replay, the spool closed, then the
        writes still queued (a replay's included)."""
        await self._decider.drain()
        await self._outage.close()
        await self._router.close()
        await self._decider.close()


def _outcome(reply: Reply) -> str:
    if reply.status >= 500:
        return "failed"
    if reply.status >= 400:
        return "invalid"
    return "duplicate" if reply.duplicate else "stored"
