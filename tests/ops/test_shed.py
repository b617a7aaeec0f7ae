"""Past capacity: a request event admission refuses is answered before it is parsed, spooled
as received, counted at once and logged once an interval; replay stores it as its route
says, the fallback decision with its facts for a valid one, the raw body with its error
code for an invalid one (resilience/outage.py `shed`, replay.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.rules.decision import Decision
from app.services.intake.answers import build_answer
from app.services.intake.deliveries import Delivery
from app.services.resilience import Outage
from app.services.resilience.entries import DECISION, SpooledDecision, shed_entry
from app.settings import AnswerDefaults
from app.sinch import samples
from app.store.models import CallbackRow, VerificationRow
from tests.ops.outage import guard, settled
from tests.ops.scrape import sample
from tests.support import TEST_APP_KEY

NUMBER = "+46701234567"


@asynccontextmanager
async def shedding(app: FastAPI) -> AsyncIterator[Outage]:
    """Admission refusing every request event (decisions in flight whose holds no budget
    fits: its own estimate), and replay held back (its lock) until the block ends."""
    outage: Outage = app.state.runtime.outage
    admission = outage.admission
    admission.hold = 10.0
    tickets = []
    async with outage._replaying:
        while (ticket := admission.admit(1.0)) is not None:
            tickets.append(ticket)
        try:
            yield outage
        finally:
            for ticket in tickets:
                admission.release(ticket, now=ticket.started)
            admission.hold = 0.002


def _callbacks(body: bytes) -> Any:
    rows = CallbackRow.__table__.c
    columns = (rows.http_status, rows.error_code, rows.event)
    return select(*columns).where(rows.raw_body == body)


async def _rows(app: FastAPI, statement: Any) -> list[tuple[Any, ...]]:
    async with app.state.runtime.engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(statement)).all()]


INVALID = {  # a body, the error code its 400 had, the event name its inbox row had
    "a field missing": (
        {k: v for k, v in samples.request_event(number=NUMBER).items() if k != "identity"},
        "invalid_event",
        "VerificationRequestEvent",
    ),
    "a NUL in a field": (
        {**samples.request_event(number=NUMBER), "custom": "a\x00b"},
        "malformed_json",
        None,
    ),
}


@pytest.mark.parametrize("case", INVALID)
async def test_an_invalid_request_event_shed_unread_is_answered_the_fallback_and_kept(
    database_url: str, tmp_path: Path, case: str
) -> None:
    """Shed before its parse, an invalid request event gets the fallback (200), not its 400;
    replay finds it invalid and stores its raw body with its error code, as answered.
    Nothing is decided and nothing is lost."""
    event, code, name = INVALID[case]
    body = json.dumps(event).encode()
    async with guard(database_url, tmp_path) as (app, sinch):
        async with shedding(app) as outage:
            response = await sinch.post(body)
            (entry,) = await outage.spool.head(10)
        assert (response.status_code, response.json()) == (200, {"action": "deny"})
        assert (entry.kind, entry.key) == (DECISION, event["id"])
        await settled(app)
        stored = await _rows(app, _callbacks(body))
        verifications = await _rows(
            app, select(func.count()).where(VerificationRow.__table__.c.id == event["id"])
        )
        metrics = (await sinch.client.get("/metrics")).text
    assert stored == [(200, code, name)], "kept raw, as answered"
    assert verifications == [(0,)]
    replayed = sample(metrics, "verifyguard_spool_replayed_total", kind=DECISION, outcome="invalid")
    assert replayed == 1


async def test_a_shed_request_is_answered_unread_and_replayed_with_its_decision(
    database_url: str, tmp_path: Path
) -> None:
    """A valid request event shed: the deny at once, its entry the body as received, then
    stored as its decision would have been (the fallback, with the facts of the event)."""
    event = samples.request_event(number=NUMBER)
    async with guard(database_url, tmp_path) as (app, sinch):
        async with shedding(app) as outage:
            response = await sinch.post(event)
            (entry,) = await outage.spool.head(10)
        spooled = SpooledDecision.from_json(entry.payload)
        await settled(app)
        rows = VerificationRow.__table__.c
        stored = await _rows(
            app,
            select(rows.action, rows.decided_by, rows.reason, rows.number).where(
                rows.id == event["id"]
            ),
        )
    assert response.json() == {"action": "deny"}
    assert response.headers["content-type"] == "application/json"
    assert spooled.facts is None and spooled.decision == Decision.fallback("deny")
    assert spooled.delivery.body == json.dumps(event).encode()
    assert stored == [("deny", "fallback", "fallback", NUMBER)]


async def test_shed_answers_are_counted_by_cause_and_outcome(
    database_url: str, tmp_path: Path
) -> None:
    """The fallback counter by cause counts each shed answer as it goes out; the callbacks,
    decisions and spool counters count them too (at the end of the log's interval, or when
    the app drains)."""
    events = [samples.request_event(number=f"+4670123450{n}") for n in range(3)]
    async with guard(database_url, tmp_path) as (app, sinch):
        async with shedding(app):
            for event in events:
                assert (await sinch.post(event)).json() == {"action": "deny"}
            during = (await sinch.client.get("/metrics")).text
        await settled(app)
        after = (await sinch.client.get("/metrics")).text
    assert sample(during, "verifyguard_fallback_answers_total", cause="overload") == 3
    assert sample(after, "verifyguard_fallback_answers_total", cause="overload") == 3
    assert sample(after, "verifyguard_callbacks_total", event="request", outcome="fallback") == 3
    fallback = {"action": "deny", "reason": "fallback", "rule": "none", "mode": "fallback"}
    assert sample(after, "verifyguard_decisions_total", **fallback) == 3
    assert sample(after, "verifyguard_spool_writes_total", kind=DECISION) == 3
    assert sample(after, "verifyguard_decision_seconds_count") == 3


async def test_a_result_naming_the_request_event_is_not_shed(
    database_url: str, tmp_path: Path
) -> None:
    """Only a body plainly a request event is shed unread: a result whose field names the
    request event is stored as a result, whatever admission says."""
    request = samples.request_event(number=NUMBER)
    result = {
        **samples.result_event(verification_id=request["id"], number=NUMBER),
        "custom": "VerificationRequestEvent",
    }
    async with guard(database_url, tmp_path) as (app, sinch):
        assert (await sinch.post(request)).json()["action"] == "allow"
        async with shedding(app) as outage:
            response = await sinch.post(result)
            assert outage.spool.depth == 0
        stored = await _rows(app, _callbacks(json.dumps(result).encode()))
    assert (response.status_code, response.content) == (200, b"")
    assert stored == [(200, None, "VerificationResultEvent")]


async def test_a_redelivery_shed_keeps_the_answer_stored_first(
    database_url: str, tmp_path: Path
) -> None:
    """A redelivery shed gets the fallback; its replay leaves the decision stored by the
    first delivery, whose answer Sinch acted on."""
    event = samples.request_event(number=NUMBER)
    async with guard(database_url, tmp_path) as (app, sinch):
        first = (await sinch.post(event)).json()
        async with shedding(app):
            assert (await sinch.post(event)).json() == {"action": "deny"}
        await settled(app)
        rows = VerificationRow.__table__.c
        stored = await _rows(
            app, select(rows.answer, rows.decided_by).where(rows.id == event["id"])
        )
    assert first["action"] == "allow"
    assert [answer for answer, _ in stored] == [first]


async def test_with_an_allow_fallback_a_shed_request_is_answered_for_its_method(
    database_url: str, tmp_path: Path
) -> None:
    """An allow carries its method's settings, so such a request is parsed before it is
    answered (and still spooled and replayed as a shed one)."""
    event = samples.request_event(number=NUMBER, method="flashcall")
    answers = AnswerDefaults(flashcall_dial_timeout=7)
    overrides = {"fallback_action": "allow", "answers": answers}
    async with guard(database_url, tmp_path, **overrides) as (app, sinch):
        async with shedding(app) as outage:
            answer = (await sinch.post(event)).json()
            (entry,) = await outage.spool.head(10)
        await settled(app)
        rows = VerificationRow.__table__.c
        stored = await _rows(
            app, select(rows.action, rows.decided_by).where(rows.id == event["id"])
        )
    assert answer == build_answer(
        method="flashcall", decision=Decision.fallback("allow"), defaults=answers
    )
    assert answer["flashCall"] == {"dialTimeout": 7}
    assert "facts" not in entry.payload
    assert stored == [("allow", "fallback")]


def test_a_shed_entry_is_the_document_a_spooled_decision_writes() -> None:
    """`shed_entry` builds the text of `SpooledDecision.to_json()` for a shed request, for
    less: read back, it is the same entry (odd header values included)."""
    for content_type, app_key in [("application/json", TEST_APP_KEY), (None, 'k"\\ey\u00e9')]:
        delivery = Delivery(b'{"id":"v-1"}', content_type, app_key, datetime.now(UTC))
        text = shed_entry(delivery, b'{"action":"deny"}', 0.000012, "deny")
        expected = SpooledDecision(
            delivery, None, Decision.fallback("deny"), {"action": "deny"}, 0.000012, False
        )
        assert SpooledDecision.from_json(json.loads(text)) == expected


_LOG_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from tests.conftest import make_settings
from tests.ops.outage import guard, settled
from tests.ops.test_shed import shedding
from app.settings import AnswerDefaults
from app.sinch import samples

async def main():
    events = [samples.request_event(number=f"+4670123450{n}") for n in range(5)]
    async with guard(sys.argv[1], Path(sys.argv[2]), log_level="INFO") as (app, sinch):
        async with shedding(app):
            for event in events:
                await sinch.post(event)
        await settled(app)
    print(json.dumps([event["id"] for event in events]))

asyncio.run(main())
"""


def test_shed_answers_are_logged_once_an_interval_not_each(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """One `decision.shed` line for the interval's shed answers (their count, the answer,
    one id to follow into the audit), no `decision.made` line for each. In its own process:
    loggers are configured once per process."""
    database = tmp_path / "verifyguard.db"
    database.write_bytes(sqlite_template.read_bytes())
    run = subprocess.run(
        [sys.executable, "-c", _LOG_SCRIPT, f"sqlite+aiosqlite:///{database}", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    ids = json.loads(run.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert not [x for x in lines if x["event"] == "decision.made"]
    (shed,) = [x for x in lines if x["event"] == "decision.shed"]
    assert (shed["count"], shed["action"], shed["cause"]) == (5, "deny", "overload")
    assert shed["first_verification_id"] == ids[0]
    assert "request_id" not in shed, "the line is no one request's"
