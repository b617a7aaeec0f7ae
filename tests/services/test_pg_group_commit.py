"""Group commit of request events on PostgreSQL (intake/lanes.py, store/pg_batch_*.py).

Request events that arrive together share one counting statement and one storing
statement; each still sees its own running totals in arrival order, so concurrent bursts
at one key are cut at exactly the limit, and a lone request is written at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app.main import create_app
from app.rules.model import Policy
from app.services.intake.lanes import PgBatches
from app.services.policy.admin import replace_policy
from app.sinch import samples
from app.store.base import create_engine
from app.store.counter_model import BucketClock, CounterDeltas, Reads, WindowQuery
from app.store.models import CounterRow, VerificationRow
from app.store.pg_batch_count import CountItem, count_batch
from tests.conftest import _truncate, make_settings
from tests.support import SinchSender

pytestmark = pytest.mark.postgres

NUMBER_LIMIT = {
    "name": "number-velocity",
    "action": "deny",
    "reason": "number_velocity",
    "when": {"velocity": {"key": "number", "window": "1h", "max": 5}},
}
ALLOWED_LIMIT = {
    "name": "allowed-velocity",
    "action": "deny",
    "reason": "number_velocity",
    "when": {"velocity": {"key": "number", "window": "1h", "max": 3, "only_allowed": True}},
}


@pytest.fixture
async def pg(postgres_database: str, tmp_path: Path) -> AsyncIterator[SinchSender]:
    await _truncate(postgres_database)
    app = create_app(make_settings(postgres_database, tmp_path))
    async with app.router.lifespan_context(app):
        from httpx import ASGITransport, AsyncClient

        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield SinchSender(http, path=app.state.runtime.settings.callback_path)


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


def _batches(sender: SinchSender) -> PgBatches:
    scope = _runtime(sender).intake._decider.scope
    assert isinstance(scope, PgBatches)
    return scope


def _sample(sender: SinchSender, name: str) -> float:
    registry = _runtime(sender).metrics.registry
    return float(registry.get_sample_value(name) or 0.0)


async def _install(sender: SinchSender, *rules: dict[str, Any]) -> None:
    """The policy, loaded: a request after a change reloads it on the slow path."""
    policy = Policy.model_validate({"rules": list(rules), "default_action": "allow"})
    async with _runtime(sender).engine.begin() as conn:
        await replace_policy(conn, policy=policy, now=datetime.now(UTC), actor="test")
    assert (await sender.post(samples.request_event(number=_number()))).status_code == 200


def _number() -> str:
    return f"+4670{random.randint(1_000_000, 9_999_999)}"


async def _post_all(sender: SinchSender, events: list[dict[str, Any]]) -> list[str]:
    responses = await asyncio.gather(*(sender.post(e) for e in events))
    assert {r.status_code for r in responses} == {200}
    return [r.json()["action"] for r in responses]


async def test_count_batch_returns_running_totals_in_arrival_order(postgres_database: str) -> None:
    """One statement counts the batch; each attempt sees the totals up to itself."""
    await _truncate(postgres_database)
    engine = create_engine(postgres_database, autocommit=True)
    clock, now = BucketClock(60), datetime.now(UTC)
    query = WindowQuery("number:+46700000001", 3600, "attempts")
    item = CountItem(
        (CounterDeltas((query.key, "global"), clock.bucket(now), {"attempts": 1}),),
        Reads([query], now),
        0,
    )
    try:
        async with engine.connect() as conn:
            first = await count_batch(conn, clock, [item] * 7)
            second = await count_batch(conn, clock, [item] * 3)
            moved = await count_batch(conn, clock, [CountItem(item.changes, item.reads, 99)])
            stored = await conn.scalar(
                select(func.sum(CounterRow.attempts)).where(CounterRow.key == query.key)
            )
    finally:
        await engine.dispose()
    assert [t[query] for t in first if t is not None] == [1, 2, 3, 4, 5, 6, 7]
    assert [t[query] for t in second if t is not None] == [8, 9, 10]
    assert moved == [None]  # planned under another policy version: nothing counted
    assert stored == 10


async def test_concurrent_bursts_at_one_key_are_cut_at_exactly_the_limit(
    pg: SinchSender,
) -> None:
    await _install(pg, NUMBER_LIMIT)
    number = _number()
    before = _sample(pg, "verifyguard_count_batch_size_count")
    bursts = [[samples.request_event(number=number) for _ in range(15)] for _ in range(4)]
    answers = await asyncio.gather(*(_post_all(pg, burst) for burst in bursts))
    assert Counter(a for burst in answers for a in burst) == Counter(allow=5, deny=55)
    batches = _sample(pg, "verifyguard_count_batch_size_count") - before
    assert 0 < batches < 60  # they were counted together, not one statement each
    async with _runtime(pg).engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count())
            .select_from(VerificationRow)
            .where(VerificationRow.number == number)
        )
    assert stored == 60


async def test_allowed_only_limit_is_settled_through_the_batches(pg: SinchSender) -> None:
    await _install(pg, ALLOWED_LIMIT)
    number = _number()
    first = [samples.request_event(number=number) for _ in range(12)]
    assert Counter(await _post_all(pg, first)) == Counter(allow=3, deny=9)
    # Settled: no attempt is left pending, and only the allowed ones count as allowed.
    async with _runtime(pg).engine.connect() as conn:
        row = (
            await conn.execute(
                select(func.sum(CounterRow.pending), func.sum(CounterRow.allowed)).where(
                    CounterRow.key.like(f"%{number}%")
                )
            )
        ).one()
    assert tuple(row) == (0, 3)
    assert Counter(await _post_all(pg, [samples.request_event(number=number)])) == Counter(deny=1)


async def test_a_redelivery_in_the_same_batch_is_answered_as_a_duplicate(
    pg: SinchSender,
) -> None:
    await _install(pg, NUMBER_LIMIT)
    number = _number()
    event = samples.request_event(number=number)
    responses = await asyncio.gather(*(pg.post(event) for _ in range(3)))
    assert {r.json()["action"] for r in responses} == {"allow"}
    async with _runtime(pg).engine.connect() as conn:
        attempts = await conn.scalar(
            select(func.sum(CounterRow.attempts)).where(CounterRow.key == f"number:{number}")
        )
    assert attempts == 1  # the redeliveries took their counts back


async def test_a_lone_request_is_answered_without_waiting_for_a_batch(pg: SinchSender) -> None:
    """Its count and store batches hold it alone, and start as soon as it arrives."""
    await _install(pg, NUMBER_LIMIT)
    batches = _batches(pg)
    entered: list[float] = []
    lend = batches.lend

    def timed_lend() -> Any:
        entered.append(time.perf_counter())
        return lend()

    batches.lend = timed_lend
    sizes: list[int] = []
    batches.counts.on_batch = batches.stores.on_batch = sizes.append
    sent = time.perf_counter()
    assert await _post_all(pg, [samples.request_event(number=_number())]) == ["allow"]
    assert sizes == [1, 1]
    # No collection window: the count batch started at once (a window of even a few
    # milliseconds would show here; the bound is loose for a loaded machine).
    assert entered[0] - sent < 0.05


async def test_stored_decision_documents_are_compressed_with_lz4(pg: SinchSender) -> None:
    """The ~7 kB decision document is TOAST-compressed with lz4 (~4x cheaper for
    PostgreSQL than the default pglz), where the server supports it."""
    async with _runtime(pg).engine.connect() as conn:
        supported = await conn.scalar(
            text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            )
        )
    if not supported:
        pytest.skip("this PostgreSQL has no lz4")
    await _post_all(pg, [samples.request_event(number=_number()) for _ in range(5)])
    async with _runtime(pg).engine.connect() as conn:
        methods = (
            await conn.scalars(text("SELECT pg_column_compression(decision) FROM verifications"))
        ).all()
    assert methods and set(methods) == {"lz4"}
