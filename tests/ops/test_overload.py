"""Under a load at or past capacity: what cannot be decided in time is shed at once (not
left to time out in the queue), the rest decided in time, nothing lost, and the guard is
back to normal as soon as the load drops (services/admission.py).

Thirty-two keep-alive connections, each sending its next request event as soon as the last
is answered, to a real server process: on SQLite (one writer, group commit) and on
PostgreSQL with two counting connections. Before admission and group commit this load
turned nearly every answer on SQLite into the fallback at the deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.services.admission import Admission
from app.store.base import create_engine
from bench.loadgen import exchange
from bench.payloads import signed_requests
from tests.ops.outage import DEADLINE_MS, MARGIN, stored_requests
from tests.support import TEST_APP_KEY, TEST_APP_SECRET
from tests.support_server import CALLBACK_PATH, served

CONNECTIONS = 32
SECONDS = 3.0
FALLBACKS = "verifyguard_fallback_answers_total"


async def _closed_loop(base: str, requests: list[bytes]) -> list[tuple[str, float, Any]]:
    """Each connection sends its next request event as soon as the last is answered."""
    host, port = base.removeprefix("http://").split(":")
    pending = iter(requests)
    answered: list[tuple[str, float, Any]] = []
    stop = time.monotonic() + SECONDS

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.monotonic() < stop and (request := next(pending, None)):
            started = time.perf_counter()
            reply = await exchange(reader, writer, request)
            assert reply.startswith(b"200 "), reply[:300]
            ident = json.loads(request.partition(b"\r\n\r\n")[2])["id"]
            answered.append((ident, time.perf_counter() - started, json.loads(reply[4:])))
        writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return answered


async def _metrics(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families((await client.get("/metrics")).text):
        for sample in family.samples:
            values[(sample.name, sample.labels.get("cause", ""))] = sample.value
    return values


async def _settled(client: httpx.AsyncClient, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        # Another process's state: polled.
        while (await _metrics(client)).get(("verifyguard_spool_depth", ""), 1.0):  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def test_a_burst_past_capacity_sheds_the_excess_and_recovers(
    database_url: str, tmp_path: Path
) -> None:
    env = {
        "VERIFYGUARD_DECISION_DEADLINE_MS": str(DEADLINE_MS),
        "VERIFYGUARD_DATABASE_POOL_SIZE": "2",
    }
    with served(database_url, tmp_path, **env) as base:
        sign = {"host": base.removeprefix("http://"), "path": CALLBACK_PATH}
        sign |= {"key": TEST_APP_KEY, "secret": TEST_APP_SECRET}
        burst = await _closed_loop(base, signed_requests(6000, **sign, seed=1))
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            during = await _metrics(client)
            await _settled(client)
            # Then at an ordinary pace: every event decided, none shed.
            after: list[tuple[str, float, Any]] = []
            for request in signed_requests(20, **sign, seed=2):
                head, _, body = request.partition(b"\r\n\r\n")
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
                reply = await client.post(CALLBACK_PATH, content=body, headers=headers)
                after.append((json.loads(body)["id"], 0.0, reply.json()))
            final = await _metrics(client)
            shed_after = final.get((FALLBACKS, "overload"), 0.0)
    engine = create_engine(database_url)
    try:
        stored = await stored_requests(engine, [ident for ident, _, _ in burst + after])
    finally:
        await engine.dispose()

    shed, timed_out = (
        during.get((FALLBACKS, "overload"), 0.0),
        during.get((FALLBACKS, "deadline"), 0.0),
    )
    seconds = sorted(seconds for _, seconds, _ in burst)
    # Left to queue, answers come at the deadline (the median at it) and past it; admitted
    # in time, well before it. Not a p99: on a shared machine the server process may be
    # descheduled for a moment, and 1 % of 3 s of answers is 30 ms of them.
    median, late = seconds[len(seconds) // 2], sum(s > DEADLINE_MS / 1000 + MARGIN for s in seconds)
    assert median <= DEADLINE_MS / 1000 / 2, f"median {median:.3f}s: queued to the deadline"
    assert late <= len(seconds) / 50, f"{late} of {len(seconds)} answered past the deadline"
    assert len(burst) - shed - timed_out > len(burst) / 10, "nearly everything was the fallback"
    # What could not be decided in time was answered up front, not left to time out (a
    # first wave may time out while the estimate of the decisions' cost is learnt).
    assert timed_out <= max(shed / 4, CONNECTIONS), (
        f"{timed_out:.0f} timed out in the queue, {shed:.0f} shed"
    )
    assert shed_after == shed, "still shedding after the burst"
    # The gate's state is scraped (read when scraped), and back at nothing once the loop is.
    assert ("verifyguard_event_loop_lag_seconds", "") in during
    assert final[("verifyguard_admission_shed_share", "")] == 0.0, "the gate still sheds"
    # Decided by the rules (the burst may have tripped some), not answered by the fallback.
    assert all(stored[ident]["reason"] != "fallback" for ident, _, _ in after)
    assert len(stored) == len(burst) + len(after), "an event was lost"
    told = {ident: answer for ident, _, answer in burst + after}
    assert all(stored[i]["answer"] == told[i] for i in told), "stored differs from the answer"


def test_admission_admits_what_the_lanes_can_decide_in_time() -> None:
    admission = Admission(lanes=2, hold=0.010)
    admitted = 0
    while admission.admit(0.100):
        admitted += 1
    # 2 lanes, 10 ms each, 80 % of 100 ms: 8 rounds of 2, the 16th in flight the last.
    assert admitted == 16
    assert admission.pressed
    admission.release()
    assert admission.admit(0.100), "a finished decision makes room"
    assert not admission.admit(0.100)
    for _ in range(admission.in_flight):
        admission.release()
    assert admission.in_flight == 0
    assert admission.admit(0.100)


def test_a_free_lane_is_always_tried_however_slow_decisions_were() -> None:
    admission = Admission(lanes=2, hold=5.0)  # far beyond any budget
    assert admission.admit(0.100)
    assert admission.admit(0.100)
    assert not admission.admit(0.100), "both lanes busy: a third would only queue"
