"""Results and SMS receipts that arrive together: on PostgreSQL stored in shared
transactions (store/pg_outcomes.py), each exactly as if it had come alone.

Everything is sent at once through the real endpoint, signed, so the batches form the way
they do under load: every event stored once, redeliveries answered as duplicates, a late
PENDING never overwriting a final status, and each success credited to its counters once.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from prometheus_client import Metric
from sqlalchemy import func, select

from app.rules.model import Policy
from app.services.intake.batching import Batcher
from app.sinch import samples
from app.store.models import CallbackRow, VerificationRow
from app.store.pg_outcomes import DeliveryWrite, ResultWrite, Write, Written, write_outcomes
from app.store.rows import CallbackClaim, DeliveryRow, ResultRow
from tests.support import SinchSender, install_policy

CONVERSION = {
    "name": "conversion",
    "mode": "shadow",
    "action": "deny",
    "reason": "low_conversion",
    "when": {"conversion": {"key": "number", "window": "1h", "min_attempts": 3, "below": 0.5}},
}
COUNT = 24


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


async def _install(sender: SinchSender) -> None:
    policy = Policy.model_validate({"rules": [CONVERSION], "default_action": "allow"})
    await install_policy(_runtime(sender), policy)


def _batches(sender: SinchSender) -> list[float]:
    """The outcome batch sizes observed so far: (count, sum)."""
    family: Metric = next(iter(_runtime(sender).metrics.outcome_batch_size.collect()))
    found = {s.name: s.value for s in family.samples}
    return [
        found["verifyguard_outcome_batch_size_count"],
        found["verifyguard_outcome_batch_size_sum"],
    ]


async def test_results_and_receipts_sent_together_are_all_stored_once(guard: SinchSender) -> None:
    await _install(guard)
    number = f"+4670{random.randint(1_000_000, 9_999_999)}"
    requests = [samples.request_event(number=number) for _ in range(COUNT)]
    for event in requests:  # one by one: under the conversion rule's min_attempts, all allowed
        assert (await guard.post(event)).json()["action"] == "allow"
    ids = [e["id"] for e in requests]
    follow: list[dict[str, Any]] = []
    for ident in ids:
        follow.append(samples.delivered_event(verification_id=ident, number=number))
        follow.append(samples.result_event(verification_id=ident, number=number))
        follow.append(samples.result_event(verification_id=ident, number=number, status="PENDING"))
    redelivered = follow[: COUNT // 2]  # the same bodies again: duplicates
    # A second SUCCESSFUL (another source) is stored but must not be credited again.
    again = [
        samples.result_event(verification_id=ident, number=number, source="manual")
        for ident in ids[:4]
    ]
    sent = follow + redelivered + again
    random.Random(7).shuffle(sent)
    responses = await asyncio.gather(*(guard.post(e) for e in sent))
    assert {r.status_code for r in responses} == {200}

    async with _runtime(guard).engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(CallbackRow))).scalar()
        rows = (
            await conn.execute(
                select(VerificationRow.status, VerificationRow.sms_result).where(
                    VerificationRow.id.in_(ids)
                )
            )
        ).all()
    assert stored == COUNT + len(follow) + len(again), "each event once, no redelivery"
    assert sorted(rows) == [("SUCCESSFUL", "Successful")] * COUNT, "a late PENDING kept out"
    # What the counters hold (in the database or in Redis), as the next attempt reads it.
    probe = samples.request_event(number=number)
    await guard.post(probe)
    async with _runtime(guard).engine.connect() as conn:
        decision = (
            await conn.execute(
                select(VerificationRow.decision).where(VerificationRow.id == probe["id"])
            )
        ).scalar_one()
    assert decision["aggregates"]["successes:number:3600"] == COUNT, "each success once"


async def test_postgres_stores_callbacks_that_arrive_together_in_shared_batches(
    guard: SinchSender, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        return  # SQLite shares its writer's transactions instead (store/group_commit.py)
    before = _batches(guard)
    events = [
        samples.delivered_event(
            verification_id=samples.new_verification_id(), number="+46701234567"
        )
        for _ in range(40)
    ]
    responses = await asyncio.gather(*(guard.post(e) for e in events))
    assert {r.status_code for r in responses} == {200}
    count, total = (a - b for a, b in zip(_batches(guard), before, strict=True))
    assert total == 40
    assert count < 40, "callbacks that came together were written together"


def _claim(ident: str, key: str, at: datetime) -> CallbackClaim:
    return CallbackClaim(
        received_at=at,
        app_key="app",
        event=key.split(":", 1)[0],
        verification_id=ident,
        dedupe_key=key,
        signature="valid",
        http_status=200,
        error_code=None,
        content_type="application/json",
        raw_body=key.encode(),
    )


def _result(ident: str, status: str, at: datetime) -> ResultRow:
    return ResultRow(
        id=ident,
        created_at=at,
        method="sms",
        number="+46701234567",
        reference=None,
        custom=None,
        status=status,
        status_reason=None,
        status_source=None,
        result_at=at,
    )


async def test_one_batch_keeps_arrival_order_per_verification(
    guard: SinchSender, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        return
    engine, now = _runtime(guard).engine, datetime.now(UTC)
    ident = samples.new_verification_id()
    later = now + timedelta(seconds=1)
    writes = [
        ResultWrite(_claim(ident, f"r:{ident}:S", now), _result(ident, "SUCCESSFUL", now)),
        DeliveryWrite(
            _claim(ident, f"d:{ident}", now),
            DeliveryRow(id=ident, created_at=now, sms_result="Successful", sms_delivered_at=now),
        ),
        ResultWrite(_claim(ident, f"r:{ident}:S", now), _result(ident, "SUCCESSFUL", now)),
        ResultWrite(_claim(ident, f"r:{ident}:P", later), _result(ident, "PENDING", later)),
        ResultWrite(_claim(ident, f"r:{ident}:F", later), _result(ident, "FAIL", later)),
    ]
    written = await write_outcomes(engine, writes)
    assert [w.stored for w in written] == [True, True, False, True, True]
    # Each result saw the ones before it in the batch: the first found nothing.
    assert [w.known["status"] if w.known else None for w in written] == [
        None,
        None,
        None,
        "SUCCESSFUL",
        "SUCCESSFUL",
    ]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(VerificationRow.status, VerificationRow.sms_result).where(
                    VerificationRow.id == ident
                )
            )
        ).one()
    assert tuple(row) == ("FAIL", "Successful")


async def test_a_row_that_cannot_be_stored_fails_alone_in_its_batch(
    guard: SinchSender, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        return
    engine, now = _runtime(guard).engine, datetime.now(UTC)
    batcher: Batcher[Write, Written] = Batcher(partial(write_outcomes, engine))
    ids = [samples.new_verification_id() for _ in range(3)]
    results = [_result(ident, "FAIL", now) for ident in ids]
    results[1].status_reason = "x" * 300  # longer than the column: not cut, refused
    writes = [
        ResultWrite(_claim(ident, f"r:{ident}", now), result)
        for ident, result in zip(ids, results, strict=True)
    ]
    outcomes = await asyncio.gather(*(batcher.submit(w) for w in writes), return_exceptions=True)
    await batcher.close()
    assert isinstance(outcomes[1], Exception)
    assert [o.stored for o in (outcomes[0], outcomes[2])] == [True, True]  # type: ignore[union-attr]
    async with engine.connect() as conn:
        stored = (
            await conn.execute(select(VerificationRow.id).where(VerificationRow.id.in_(ids)))
        ).scalars()
        assert set(stored) == {ids[0], ids[2]}
