"""The database pulled away under load (a real TCP proxy in front of PostgreSQL).

Properties: every event is stored exactly once after recovery, no answer later than the
deadline (plus CI noise), no 5xx, and the stored answer is the one Sinch was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.sinch import samples
from tests.conftest import _truncate
from tests.ops.load import Load
from tests.ops.outage import (
    DEADLINE_MS,
    MARGIN,
    claims,
    counted_numbers,
    direct,
    guard,
    opened,
    settled,
    stored_requests,
)
from tests.support_proxy import FaultProxy

pytestmark = [
    pytest.mark.postgres,
    # The proxy cuts sockets mid-statement and mid-handshake. An asyncpg connection caught
    # that way sometimes cannot be closed cleanly (SQLAlchemy's invalidate fails on the dead
    # socket) and warns when garbage-collected, after the test: seen in ~1 of 4 full runs
    # of this test under load. Only that warning is tolerated here; the answers, latencies
    # and stored rows these tests assert are unchanged. Tracked in the closing note.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function Connection.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]
CONCURRENCY = 6


@pytest.fixture
async def pg_url(postgres_database: str) -> str:
    await _truncate(postgres_database)
    return postgres_database


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy.for_url(pg_url)
    await proxy.start()
    yield proxy
    await proxy.close()


async def _assert_nothing_lost(load: Load, pg_url: str) -> dict[str, dict[str, object]]:
    assert load.sent, "the load generator sent nothing"
    assert all(s.status == 200 for s in load.sent), {s.status for s in load.sent}
    requests = load.requests()
    ids = [s.ident for s in requests]
    async with direct(pg_url) as engine:
        stored = await stored_requests(engine, ids)
        request_claims = await claims(engine, "VerificationRequestEvent:")
        result_claims = await claims(engine, "VerificationResultEvent:")
    assert len(stored) == len(ids), f"{len(ids) - len(stored)} request events were lost"
    assert all(request_claims.get(i) == 1 for i in ids), "each request is stored exactly once"
    results = [s.ident for s in load.sent if s.kind == "result"]
    assert all(result_claims.get(i) == 1 for i in results), "each result is stored exactly once"
    assert all(stored[i]["status"] == "SUCCESSFUL" for i in results)
    told = {s.ident: s.answer for s in requests}
    differ = [i for i in ids if stored[i]["answer"] != told[i]]
    assert not differ, f"stored answers differ from what Sinch was told: {differ[:3]}"
    return stored


async def test_cut_database_under_load(proxy: FaultProxy, pg_url: str, tmp_path: Path) -> None:
    async with guard(proxy.url(pg_url), tmp_path) as (app, sinch):
        load = Load(sinch)
        running = asyncio.create_task(load.run(CONCURRENCY))
        await asyncio.sleep(0.4)
        load.phase = "outage"
        await proxy.cut()
        await asyncio.sleep(1.2)
        await proxy.restore()
        load.phase = "recovery"
        await asyncio.sleep(0.6)
        load.stop.set()
        await running
        await settled(app)
    worst = load.worst("normal", "outage", "recovery")
    assert worst <= DEADLINE_MS / 1000 + MARGIN, f"an answer took {worst:.3f}s"
    stored = await _assert_nothing_lost(load, pg_url)
    outage_ids = [s.ident for s in load.requests() if s.phase == "outage"]
    assert outage_ids, "nothing was sent during the outage"
    assert sum(bool(stored[i]["degraded"]) for i in outage_ids) >= len(outage_ids) // 2
    assert all(stored[i]["reason"] != "fallback" for i in outage_ids if stored[i]["degraded"])
    async with direct(pg_url) as engine:
        assert await counted_numbers(engine) >= len(load.requests()), "replays are counted"


async def test_slow_database_under_load(proxy: FaultProxy, pg_url: str, tmp_path: Path) -> None:
    async with guard(proxy.url(pg_url), tmp_path) as (app, sinch):
        load = Load(sinch)
        running = asyncio.create_task(load.run(CONCURRENCY))
        await asyncio.sleep(0.4)
        load.phase = "outage"
        proxy.slow(0.6)
        # The breaker opens once a decision missed its deadline and the probe failed after
        # it: when is the machine's (a fixed 1.5 s was too short once, in a full run). Then
        # a short while decided from memory: every answer then is a spool entry, replayed
        # one by one after recovery, so the spool's depth follows the phase's length (3 s
        # under load left ~1,700 entries, more than `settled` could replay in 20 s).
        await opened(app)
        await asyncio.sleep(0.5)
        await proxy.restore()
        load.phase = "recovery"
        await asyncio.sleep(0.6)
        load.stop.set()
        await running
        await settled(app)
        assert app.state.runtime.outage.spool.depth == 0
    worst = load.worst("normal", "outage", "recovery")
    assert worst <= DEADLINE_MS / 1000 + MARGIN, f"an answer took {worst:.3f}s"
    stored = await _assert_nothing_lost(load, pg_url)
    outage_ids = [s.ident for s in load.requests() if s.phase == "outage"]
    assert any(stored[i]["degraded"] for i in outage_ids), "the breaker never opened"


async def test_spool_survives_a_restart(proxy: FaultProxy, pg_url: str, tmp_path: Path) -> None:
    url = proxy.url(pg_url)
    events = [samples.request_event(number=f"+46701{n:06d}") for n in range(5)]
    async with guard(url, tmp_path) as (app, sinch):
        await proxy.cut()
        answers = [(await sinch.post(event)).json() for event in events]
        receipt = samples.result_event(verification_id=events[0]["id"], number="+46701000000")
        assert (await sinch.post(receipt)).status_code == 200
        assert app.state.runtime.outage.spool.depth == len(events) + 1
        ready = await sinch.client.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
    # Shut down while the database was away: the spool is left for the next start.
    await proxy.restore()
    async with guard(url, tmp_path) as (app, _sinch):
        await settled(app)
    async with direct(pg_url) as engine:
        stored = await stored_requests(engine, [e["id"] for e in events])
    assert [stored[e["id"]]["answer"] for e in events] == answers
    assert all(row["degraded"] for row in stored.values())
    assert stored[events[0]["id"]]["status"] == "SUCCESSFUL", "replayed in order"


async def test_fallback_mode_answers_the_fallback_and_keeps_it(
    proxy: FaultProxy, pg_url: str, tmp_path: Path
) -> None:
    settings = {"outage_mode": "fallback", "fallback_action": "deny"}
    async with guard(proxy.url(pg_url), tmp_path, **settings) as (app, sinch):
        await sinch.post(samples.request_event(number="+46701234567"))
        await proxy.cut()
        event = samples.request_event(number="+46701234568")
        response = await sinch.post(event)
        assert response.json() == {"action": "deny"}
        await proxy.restore()
        await settled(app)
    async with direct(pg_url) as engine:
        row = (await stored_requests(engine, [event["id"]]))[event["id"]]
    assert (row["reason"], row["decided_by"], row["degraded"]) == ("fallback", "fallback", True)
