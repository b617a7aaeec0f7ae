"""Group commit on PostgreSQL with the counters in Redis (intake/redis_batches.py).

Request events that arrive together share one storing statement with one commit; each is counted by an atomic Redis script run, so concurrent
bursts at one key are still cut at exactly the limit, and each is settled in Redis once
its decision is stored (an allowed one's answer without waiting for that).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from app.main import create_app
from app.rules.model import Policy
from app.services.aggregates import Counted
from app.services.intake.redis_batches import RedisBatches
from app.sinch import samples
from app.store.counter_model import Attempt, Reads, WindowQuery
from app.store.models import CounterRow, VerificationRow
from tests.conftest import _truncate, make_settings
from tests.support import SinchSender, install_policy

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

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
async def guard(
    postgres_database: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[SinchSender]:
    await _truncate(postgres_database)
    settings = make_settings(postgres_database, tmp_path, redis_url=redis_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield SinchSender(http, path=settings.callback_path)


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


def _batches(sender: SinchSender) -> RedisBatches:
    scope = _runtime(sender).intake._decider.scope
    assert isinstance(scope, RedisBatches)
    return scope


def _sample(sender: SinchSender, name: str) -> float:
    registry = _runtime(sender).metrics.registry
    return float(registry.get_sample_value(name) or 0.0)


async def _install(sender: SinchSender, *rules: dict[str, Any], default: str = "allow") -> None:
    """The policy, changed as the admin API changes it (its version told to Redis once
    committed): the next request finds the new version there and reloads it."""
    policy = Policy.model_validate({"rules": list(rules), "default_action": default})
    await install_policy(_runtime(sender), policy)


def _number() -> str:
    return f"+4670{random.randint(1_000_000, 9_999_999)}"


async def _post_all(sender: SinchSender, events: list[dict[str, Any]]) -> list[str]:
    responses = await asyncio.gather(*(sender.post(e) for e in events))
    assert {r.status_code for r in responses} == {200}
    return [r.json()["action"] for r in responses]


async def _stored(sender: SinchSender, number: str) -> int:
    async with _runtime(sender).engine.connect() as conn:
        found = await conn.scalar(
            select(func.count())
            .select_from(VerificationRow)
            .where(VerificationRow.number == number)
        )
    return int(found or 0)


async def test_concurrent_request_events_share_store_batches(guard: SinchSender) -> None:
    """40 request events at once: stored by at most 20 statements and commits (they used
    to take a connection, a version read and a transaction each)."""
    await _install(guard)
    assert await _post_all(guard, [samples.request_event(number=_number())]) == ["allow"]
    before = _sample(guard, "verifyguard_decision_batch_size_count")
    stored_before = _sample(guard, "verifyguard_decision_batch_size_sum")
    number = _number()
    answers = await _post_all(guard, [samples.request_event(number=number) for _ in range(40)])
    assert answers == ["allow"] * 40
    batches = _sample(guard, "verifyguard_decision_batch_size_count") - before
    assert _sample(guard, "verifyguard_decision_batch_size_sum") - stored_before == 40
    assert 0 < batches <= 20
    assert await _stored(guard, number) == 40
    async with _runtime(guard).engine.connect() as conn:
        rows = await conn.scalar(select(func.count()).select_from(CounterRow))
    assert rows == 0  # counted in Redis, not in the database


async def test_concurrent_bursts_at_one_key_are_cut_at_exactly_the_limit(
    guard: SinchSender,
) -> None:
    await _install(guard, NUMBER_LIMIT)
    number = _number()
    bursts = [[samples.request_event(number=number) for _ in range(15)] for _ in range(4)]
    answers = await asyncio.gather(*(_post_all(guard, burst) for burst in bursts))
    assert Counter(a for burst in answers for a in burst) == Counter(allow=5, deny=55)
    assert await _stored(guard, number) == 60


async def test_allowed_only_limit_is_settled_in_redis_after_the_batch(
    guard: SinchSender,
) -> None:
    await _install(guard, ALLOWED_LIMIT)
    number = _number()
    first = [samples.request_event(number=number) for _ in range(12)]
    assert Counter(await _post_all(guard, first)) == Counter(allow=3, deny=9)
    # Settled: the denied ones no longer count as allowed (pending), the allowed ones do.
    other = _number()
    assert await _post_all(guard, [samples.request_event(number=other)]) == ["allow"]
    assert await _post_all(guard, [samples.request_event(number=number)]) == ["deny"]


async def test_an_allowed_answer_leaves_before_its_settle_and_is_settled_by_shutdown(
    postgres_database: str, redis_url: str, tmp_path: Path
) -> None:
    """Settling an allowed attempt changes no read (pending counts as allowed): its answer
    does not wait for that round trip to Redis (it used to, and with the settle held back
    here, missed its deadline). Redis stores allowed and pending in one field (an allowed
    settle writes nothing there: store/redis_counters.py), so both count as allowed at the end."""
    await _truncate(postgres_database)
    settings = make_settings(
        postgres_database, tmp_path, redis_url=redis_url, decision_deadline_ms=1000
    )
    app = create_app(settings)
    answered = asyncio.Event()
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            http.app = app  # type: ignore[attr-defined]
            sender = SinchSender(http, path=settings.callback_path)
            await _install(sender, ALLOWED_LIMIT)
            number = _number()
            assert await _post_all(sender, [samples.request_event(number=number)]) == ["allow"]
            backend = app.state.runtime.aggregator.backend
            apply = backend.apply

            async def held_until_answered(conn: Any, changes: Any) -> None:
                await answered.wait()
                await apply(conn, changes)

            backend.apply = held_until_answered
            response = await sender.post(samples.request_event(number=number))
            answered.set()
            assert response.json()["action"] == "allow"
            assert _fallbacks(sender) == 0
    assert await _settled(redis_url, f"{settings.redis_prefix}c:") == {"al": 2, "p": 0}


async def test_an_allowed_settle_that_writes_nothing_starts_nothing(guard: SinchSender) -> None:
    """Redis stores pending as allowed, so settling an allowed attempt writes nothing: its
    finish leaves no task behind (one per allowed answer was ~19 µs of the app's CPU); a
    denied attempt's settle is still written before its answer."""
    backend = _runtime(guard).aggregator.backend
    keys = {f"number:{_number()}"}
    now = datetime.now(UTC)
    attempt = Attempt.of(keys, keys, clock=backend.clock, now=now, spend=1)
    await backend.apply(None, attempt.counted())
    lane, tasks = _batches(guard), len(asyncio.all_tasks())
    await lane.finish(Counted(backend, cast(Any, None), attempt, {}), allowed=True, duplicate=False)
    assert len(asyncio.all_tasks()) == tasks
    await lane.finish(
        Counted(backend, cast(Any, None), attempt, {}), allowed=False, duplicate=False
    )
    reads = Reads([WindowQuery(next(iter(keys)), 3600, "allowed")], now)
    assert list((await backend.read(None, reads)).values()) == [0]


def _fallbacks(sender: SinchSender) -> float:
    registry = _runtime(sender).metrics.registry
    return sum(
        float(sample.value)
        for metric in registry.collect()
        if metric.name == "verifyguard_fallback_answers"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def _settled(redis_url: str, prefix: str) -> dict[str, int]:
    """Allowed and pending summed over the bucket fields of the day hashes under `prefix`
    (store/redis_counters.py: "al754" is bucket 754's allowed and pending; "alt75", "alh12"
    sums of buckets)."""
    client = Redis.from_url(redis_url)
    totals = {"al": 0, "p": 0}
    try:
        async for key in client.scan_iter(match=f"{prefix}*:d*"):
            for field, raw in (await client.hgetall(key)).items():
                if found := re.fullmatch(r"(al|p)\d+", field.decode()):
                    totals[found[1]] += int(raw)
    finally:
        await client.aclose()
    return totals


async def test_a_policy_change_is_decided_under_at_once(guard: SinchSender) -> None:
    await _install(guard)
    assert await _post_all(guard, [samples.request_event(number=_number())]) == ["allow"]
    await _install(guard, default="deny")
    events = [samples.request_event(number=_number()) for _ in range(10)]
    assert await _post_all(guard, events) == ["deny"] * 10


async def test_a_redelivery_in_the_same_batch_is_answered_as_a_duplicate(
    guard: SinchSender,
) -> None:
    await _install(guard, NUMBER_LIMIT)
    number = _number()
    event = samples.request_event(number=number)
    responses = await asyncio.gather(*(guard.post(event) for _ in range(3)))
    assert {r.json()["action"] for r in responses} == {"allow"}
    # The redeliveries took their counts back: 1 counted, so 4 more fit under 5.
    later = [samples.request_event(number=number) for _ in range(5)]
    assert Counter(await _post_all(guard, later)) == Counter(allow=4, deny=1)


async def test_a_lone_request_is_counted_and_stored_alone(guard: SinchSender) -> None:
    """No collection window: its script run and its store batch hold it alone, and nothing
    reads the policy's version from PostgreSQL (Redis holds it)."""
    await _install(guard, NUMBER_LIMIT)
    assert await _post_all(guard, [samples.request_event(number=_number())]) == ["allow"]
    batches = _batches(guard)
    sizes: list[int] = []
    batches.stores.on_batch = sizes.append
    runtime = _runtime(guard)
    calls: list[int] = []
    pipe = runtime.aggregator.backend._pipe
    send = pipe._send

    async def spy(runs: list[Any]) -> list[str]:
        calls.append(len(runs))
        return cast(list[str], await send(runs))

    pipe._send = spy
    lent: list[int] = []
    lend = batches.lend

    def counted_lend() -> Any:
        lent.append(1)
        return lend()

    batches.lend = counted_lend
    assert await _post_all(guard, [samples.request_event(number=_number())]) == ["allow"]
    assert sizes == [1]
    assert calls == [1]
    assert lent == [], "a connection was lent beside the store batch's"


async def test_a_count_waits_for_no_connection(
    postgres_database: str, redis_url: str, tmp_path: Path
) -> None:
    """With every connection taken, request events are still counted in Redis at once, under
    the policy's version kept there (no version read waits for a connection), and answered
    with the fallback when the deadline passes; as any decision late after its count
    (resilience/outage.py), their attempts stay counted."""
    await _truncate(postgres_database)
    settings = make_settings(
        postgres_database,
        tmp_path,
        redis_url=redis_url,
        decision_deadline_ms=300,
        database_pool_size=2,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            http.app = app  # type: ignore[attr-defined]
            sender = SinchSender(http, path=settings.callback_path)
            await _install(sender, NUMBER_LIMIT)
            runtime = app.state.runtime
            number = _number()
            assert await _post_all(sender, [samples.request_event(number=number)]) == ["allow"]
            observed: list[int | None] = []
            observe = runtime.aggregator.backend.observe

            async def spy(conn: Any, changes: Any, reads: Any, **options: Any) -> Any:
                totals = await observe(conn, changes, reads, **options)
                observed.append(None if totals is None else options.get("version"))
                return totals

            runtime.aggregator.backend.observe = spy
            version = runtime.policies.loaded.version
            events = [samples.request_event(number=number) for _ in range(5)]
            async with runtime.counting(), runtime.counting():  # every connection taken
                answers = await _post_all(sender, events)
                assert observed == [version] * 5, "a count waited for a connection"
            await runtime.intake.drain()
            assert answers == ["deny"] * 5  # the fallback
            # 1 + 5 attempts counted: the limit of 5 is reached.
            later = [samples.request_event(number=number) for _ in range(2)]
            assert await _post_all(sender, later) == ["deny", "deny"]
            fresh = samples.request_event(number=_number())
            assert await _post_all(sender, [fresh]) == ["allow"]  # decided, not the fallback
