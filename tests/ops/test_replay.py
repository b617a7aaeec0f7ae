"""Replaying the spool into the database, on SQLite and PostgreSQL: once, in order, counted."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.rules.facts import Facts, derive_facts
from app.services.admission import Ticket
from app.services.intake.deliveries import Delivery
from app.services.resilience import Outage
from app.services.resilience.entries import (
    CALLBACK,
    DECISION,
    SpooledDecision,
    delivery_to_json,
)
from app.sinch import samples
from app.store.models import CallbackRow, CounterRow, VerificationRow
from app.store.spool import Spool
from tests.conftest import _truncate, make_settings
from tests.ops.outage import guard, settled
from tests.ops.scrape import sample
from tests.support import TEST_APP_KEY, SinchSender

NUMBER = "+46701234567"


def _delivery(event: dict[str, Any]) -> Delivery:
    return Delivery(json.dumps(event).encode(), "application/json", TEST_APP_KEY, datetime.now(UTC))


def _outage(app: Any) -> Outage:
    outage: Outage = app.state.runtime.outage
    return outage


def _event_facts(now: datetime) -> Facts:
    """The facts of the tests' request event (NUMBER, TEST_APP_KEY) at `now`."""
    return derive_facts(
        method="sms",
        endpoint=NUMBER,
        price_amount=0.0453,
        price_currency="EUR",
        rate_amount=0.0,
        rate_currency="EUR",
        reference=None,
        custom=None,
        application=TEST_APP_KEY,
        now=now,
    )


async def _spooled_decision(outage: Outage, event: dict[str, Any]) -> SpooledDecision:
    """What the outage path spools: decided from memory, marked degraded."""
    delivery = _delivery(event)
    facts = _event_facts(delivery.received_at)
    decision, facts = await outage.local.decide(facts)
    return SpooledDecision(delivery, facts, decision, {"action": decision.action}, 1.0, True)


async def _scalar(engine: AsyncEngine, stmt: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(stmt)).scalar_one()


async def test_a_spooled_decision_is_stored_and_counted_exactly_once(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    outage = _outage(client.app)  # type: ignore[attr-defined]
    event = samples.request_event(number=NUMBER)
    entry = (await _spooled_decision(outage, event)).to_json()
    await outage.spool.append(DECISION, entry)
    await outage.spool.append(DECISION, entry)  # as if a crash came before the delete
    assert await outage.replay() == 2
    assert outage.spool.depth == 0
    row = VerificationRow.__table__.c
    stored = await _scalar(engine, select(row.degraded).where(row.id == event["id"]))
    assert stored is True
    claims = select(func.count()).where(CallbackRow.__table__.c.verification_id == event["id"])
    assert await _scalar(engine, claims) == 1
    counters = CounterRow.__table__.c
    attempts = select(func.sum(counters.attempts)).where(counters.key == f"number:{NUMBER}")
    assert await _scalar(engine, attempts) == 1, "counted once, though replayed twice"


async def test_a_redelivery_stored_first_is_not_overwritten_by_the_replay(
    client: AsyncClient, engine: AsyncEngine, sinch: SinchSender
) -> None:
    outage = _outage(client.app)  # type: ignore[attr-defined]
    event = samples.request_event(number=NUMBER)
    spooled = await _spooled_decision(outage, event)
    forged = SpooledDecision(
        spooled.delivery, spooled.facts, spooled.decision, {"action": "other"}, 1.0, True
    )
    sinch_response = await sinch.post(event)  # a redelivery, stored before the replay
    await outage.spool.append(DECISION, forged.to_json())
    await outage.replay()
    row = VerificationRow.__table__.c
    stored = await _scalar(engine, select(row.answer).where(row.id == event["id"]))
    assert stored == sinch_response.json()


async def test_what_a_previous_run_left_is_replayed_on_start_in_order(
    database_url: str, tmp_path: Path
) -> None:
    request = samples.request_event(number=NUMBER)
    result = samples.result_event(verification_id=request["id"], number=NUMBER)
    async with guard(database_url, tmp_path) as (app, _sinch):
        spooled = await _spooled_decision(_outage(app), request)
    spool = Spool(make_settings(database_url, tmp_path).spool_dir / "spool.db")
    await spool.open()
    await spool.append(DECISION, spooled.to_json())
    await spool.append(CALLBACK, {"delivery": delivery_to_json(_delivery(result))})
    await spool.close()
    async with guard(database_url, tmp_path) as (app, _sinch):
        await settled(app)
        engine = app.state.runtime.engine
        row = VerificationRow.__table__.c
        stmt = select(row.status, row.degraded, row.action).where(row.id == request["id"])
        async with engine.connect() as conn:
            status, degraded, action = (await conn.execute(stmt)).one()
    assert (status, degraded, action) == ("SUCCESSFUL", True, spooled.decision.action)


async def test_only_a_spooled_verifications_later_events_queue_behind_it(
    database_url: str, tmp_path: Path
) -> None:
    """A result whose request is in the spool follows it there, and is stored after it on
    replay; other verifications' results are stored at once, spool or no spool."""
    spooled_request = samples.request_event(number=NUMBER)
    other_request = samples.request_event(number="+46701234568")
    async with guard(database_url, tmp_path) as (app, sinch):
        outage = _outage(app)
        entry = await _spooled_decision(outage, spooled_request)
        # Held back: replay starts with the result, not before it.
        async with outage._replaying:  # the replay's own lock
            await outage.spool.append(DECISION, entry.to_json(), key=spooled_request["id"])
            assert (await sinch.post(other_request)).status_code == 200
            for request in (spooled_request, other_request):
                result = samples.result_event(verification_id=request["id"], number=NUMBER)
                assert (await sinch.post(result)).status_code == 200
            assert outage.spool.depth == 2, "the spooled request's result joined it"
            metrics = (await sinch.client.get("/metrics")).text
        await settled(app)
        engine = app.state.runtime.engine
        row = VerificationRow.__table__.c
        async with engine.connect() as conn:
            status = dict((await conn.execute(select(row.id, row.status))).tuples().all())
    outcomes = {
        outcome: sample(metrics, "verifyguard_callbacks_total", event="result", outcome=outcome)
        for outcome in ("stored", "spooled")
    }
    assert outcomes == {"stored": 1, "spooled": 1}
    assert status == {other_request["id"]: "SUCCESSFUL", spooled_request["id"]: "SUCCESSFUL"}


async def test_spooled_decisions_replay_together_on_sqlites_writer(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """On SQLite spooled decisions are replayed through the writer's group commit, many to
    a transaction (each was one of its own, on the pool's one connection, while request
    events waited for it), and each is stored and counted once."""
    shutil.copy(sqlite_template, tmp_path / "app.db")
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", tmp_path)
    app = create_app(settings)
    commits: list[str] = []
    async with app.router.lifespan_context(app):
        outage = _outage(app)
        events = [samples.request_event(number=f"+4670{n}") for n in range(1000000, 1000040)]
        for event in events:
            entry = await _spooled_decision(outage, event)
            await outage.spool.append(DECISION, entry.to_json())
        engine: AsyncEngine = app.state.runtime.engine
        async with engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
        raw._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        assert await outage.replay() == len(events)
        raw._conn.set_trace_callback(None)
        stored = (
            select(func.count())
            .select_from(VerificationRow)
            .where(VerificationRow.__table__.c.degraded.is_(True))
        )
        assert await _scalar(engine, stored) == len(events)
    assert 1 <= len(commits) <= 4, f"{len(commits)} transactions for {len(events)} entries"


def _in_flight(outage: Outage, *, hold: float, most: int = 1000) -> list[Ticket]:
    """Decisions taken in flight (at most `most`) while each takes `hold`, until one is not."""
    admission = outage.admission
    admission.hold = hold
    tickets = []
    while len(tickets) < most and (ticket := admission.admit(1.0)) is not None:
        tickets.append(ticket)
    return tickets


async def test_a_shed_request_is_spooled_as_received_and_stored_as_its_decision_would_be(
    database_url: str, tmp_path: Path
) -> None:
    """Past capacity most answers are shed ones: each is spooled with what was received and
    what Sinch was told, not with facts and a decision document (derived again on replay),
    and is stored with the facts the decision would have had."""
    event = samples.request_event(number=NUMBER)
    async with guard(database_url, tmp_path) as (app, sinch):
        outage = _outage(app)
        admission = outage.admission
        async with outage._replaying:  # the replay's own lock: the entry stays to be read
            tickets = _in_flight(outage, hold=10.0)  # none fits: the next is shed
            answer = (await sinch.post(event)).json()
            for ticket in tickets:
                admission.release(ticket, now=ticket.started)
            (entry,) = await outage.spool.head(10)
        assert entry.kind == DECISION
        assert "facts" not in entry.payload and "decision" not in entry.payload
        admission.hold = 0.002
        await settled(app)
        row = VerificationRow.__table__.c
        columns = (row.action, row.decided_by, row.answer, row.country, row.number_type, row.number)
        async with app.state.runtime.engine.connect() as conn:
            stored = (await conn.execute(select(*columns).where(row.id == event["id"]))).one()
    facts = _event_facts(datetime.now(UTC))
    assert tuple(stored) == (
        answer["action"],
        "fallback",
        answer,
        facts.country,
        facts.number_type,
        facts.number,
    )


async def test_replay_runs_beside_postgresqls_batched_decisions_in_flight(
    postgres_database: str, tmp_path: Path
) -> None:
    """On PostgreSQL decisions are admitted whole, many in flight at once, far more than
    lanes under a steady load below capacity: replay waited for fewer than lanes in flight,
    so the spool was not written back for as long as the load lasted. It waits while what
    decisions take lately nears their headroom (or some were shed), not for a count."""
    await _truncate(postgres_database)
    events = [samples.request_event(number=f"+4670{n}") for n in range(2000000, 2000005)]
    async with guard(postgres_database, tmp_path) as (app, _sinch):
        outage = _outage(app)
        admission = outage.admission
        assert admission.whole
        async with outage._replaying:
            for event in events:
                entry = await _spooled_decision(outage, event)
                await outage.spool.append(DECISION, entry.to_json())
            tickets = _in_flight(outage, hold=0.002, most=2 * admission.lanes)
        assert admission.in_flight > admission.lanes, "a steady load, no queue"
        await outage.replay()  # (or the supervisor's, woken by the appends)
        assert outage.spool.depth == 0
        admission.hold = 0.6  # what decisions take nears their headroom: replay waits
        await outage.spool.append(DECISION, entry.to_json())
        assert await outage.replay() == 0
        assert outage.spool.depth == 1
        for ticket in tickets:
            admission.release(ticket, now=ticket.started)
        admission.hold = 0.002
        await outage.replay()
        assert outage.spool.depth == 0
