"""A baseline refresh in progress holds no request event back, on every store (the `guard`
fixture of tests/services/conftest.py).

On SQLite the app has one connection, the request path's (store/base.py). The refresh read
through it, and under a pumping attack its read of 30 s of claims took 0.33-1 s: every
request event meanwhile waited for the connection and got the fallback answer. It now reads
through the runtime's reader (store/base.py `create_reader`): a connection of its own.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.engine import CompiledPolicy
from app.services.audit.rollup import refresh_apart
from app.services.baselines import Read, refresh_live
from app.sinch import samples
from app.store import stats_rollup_apart
from tests.audit.rows import BASE, insert_rows, row
from tests.support import SinchSender

BURST = 16


def _fallbacks(runtime: Any) -> float:
    registry = runtime.metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "verifyguard_fallback_answers"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_request_events_are_decided_while_a_refresh_reads(guard: SinchSender) -> None:
    runtime = guard.client.app.state.runtime  # type: ignore[attr-defined]
    cache = runtime.baselines
    reading, release = asyncio.Event(), asyncio.Event()
    read = cache.read

    async def slow_read(conn: AsyncConnection, policy: CompiledPolicy, now: datetime) -> Read:
        await conn.execute(text("SELECT count(*) FROM callbacks"))  # its snapshot taken
        reading.set()
        await release.wait()  # a long read, as 30 s of an attack's claims
        return await read(conn, policy, now)

    cache.read = slow_read
    before = _fallbacks(runtime)
    refresh = asyncio.create_task(
        refresh_live(runtime.reader, runtime.policies, cache, datetime.now(UTC))
    )
    try:
        await asyncio.wait_for(reading.wait(), 5)
        numbers = [f"+4673{n:07d}" for n in range(1_234_500, 1_234_500 + BURST)]
        replies = await asyncio.gather(
            *(guard.post(samples.request_event(number=n)) for n in numbers)
        )
        assert not refresh.done()  # all decided while the refresh still read
        assert [reply.json()["action"] for reply in replies] == ["allow"] * BURST
        assert _fallbacks(runtime) == before
    finally:
        release.set()
        await refresh
    assert cache.refreshed_at is not None


async def test_request_events_are_decided_while_the_rollup_reads_an_hour(
    guard: SinchSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hourly stats rollup aggregates a settled hour on the reader (an hour of an attack
    is about a million rows: seconds); the writer only stores the result."""
    runtime = guard.client.app.state.runtime  # type: ignore[attr-defined]
    await insert_rows(
        runtime.engine, [row(requested_at=BASE + timedelta(minutes=m)) for m in range(60)]
    )
    reading, release = asyncio.Event(), asyncio.Event()
    read_piece = stats_rollup_apart.read_piece

    async def slow_read(
        conn: AsyncConnection, reads: Any, since: datetime, until: datetime
    ) -> None:
        await conn.execute(text("SELECT count(*) FROM verifications"))  # its snapshot taken
        reading.set()
        await release.wait()
        await read_piece(conn, reads, since, until)

    monkeypatch.setattr(stats_rollup_apart, "read_piece", slow_read)
    before = _fallbacks(runtime)
    since = BASE - timedelta(hours=1)
    refresh = asyncio.create_task(
        refresh_apart(runtime.engine, runtime.reader, since, since + timedelta(hours=3))
    )
    try:
        await asyncio.wait_for(reading.wait(), 5)
        numbers = [f"+4673{n:07d}" for n in range(2_234_500, 2_234_500 + BURST)]
        replies = await asyncio.gather(
            *(guard.post(samples.request_event(number=n)) for n in numbers)
        )
        assert not refresh.done()
        assert [reply.json()["action"] for reply in replies] == ["allow"] * BURST
        assert _fallbacks(runtime) == before
    finally:
        release.set()
    assert await refresh == 2  # from the first row's hour (BASE) to the end of the span
