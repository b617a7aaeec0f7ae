"""Background work waits out a burst of request events (store/turns.py): a periodic job
(services/periodic.py `every`) starts only once the request path is calm, or once it has
waited BEFORE; once started, each of its turns waits while the burst is on, WITHIN in all;
and the request path is busy (services/admission.py `Admission.busy`) from the moment a
newcomer's expected wait fills BUSY of its headroom, or one is shed, until CALM has passed
without either. The baseline refresh so delayed counts what one that was not counts, on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.rules.engine import CompiledPolicy
from app.services import periodic
from app.services.admission import BUSY, CALM, HEADROOM, Admission
from app.services.baselines import BaselineCache
from app.services.periodic import SLICE, every, sliced
from app.store.turns import Gate, turn, yielding
from tests.conftest import make_settings
from tests.services.stored_history import request_in, result_in
from tests.services.test_refresh_slices import NUMBER_1H, NUMBER_HISTORY
from tests.services.test_verified_counts import Policy
from tests.store.test_baselines import NOW

BUDGET = 0.400
POLICY = cast(CompiledPolicy, Policy({NUMBER_1H: 0}, frozenset({NUMBER_HISTORY})))


class _Clock:
    def __init__(self, step: float = 0.0) -> None:
        self.now = 0.0
        self.step = step  # added at each reading

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class _Burst:
    """A request path busy for its first `calls` looks (or for ever), counting them."""

    def __init__(self, calls: float) -> None:
        self.calls = calls
        self.looks = 0

    def __call__(self) -> bool:
        self.looks += 1
        return self.looks <= self.calls


def test_a_queue_past_a_share_of_the_headroom_is_a_burst_until_calm_for_a_while() -> None:
    clock = _Clock()
    admission = Admission(lanes=1, clock=clock)
    for _ in range(20):  # batches of 4 in 8 ms: 2 ms a decision
        admission.record(4, 0.008)
    behind = int(BUDGET * HEADROOM * BUSY / admission.hold)  # newcomers' rounds to fill BUSY
    tickets = []
    for _ in range(behind - 1):
        ticket = admission.admit(BUDGET)
        assert ticket is not None
        tickets.append(ticket)
    assert not admission.busy  # a queue, but not yet a burst's
    tickets += [t for t in (admission.admit(BUDGET), admission.admit(BUDGET)) if t]
    assert admission.busy
    for ticket in tickets:
        admission.release(ticket)
    clock.now += CALM / 2
    admission.release(admission.admit(BUDGET))
    assert admission.busy  # not calm for long enough yet
    clock.now += CALM
    admission.release(admission.admit(BUDGET))
    assert not admission.busy


def test_a_shed_request_is_a_burst() -> None:
    clock = _Clock()
    admission = Admission(lanes=1, clock=clock)
    assert admission.admit(BUDGET) is not None
    assert not admission.busy
    clock.now += 1.0  # the lane's decision stalled: the next is shed
    assert admission.admit(BUDGET) is None
    assert admission.busy


async def test_a_gate_waits_while_busy_and_for_no_more_than_its_budget() -> None:
    burst = _Burst(calls=3)
    gate = Gate(burst, budget=1.0, pause=0.0, clock=_Clock(step=0.01))
    await gate.wait()
    assert burst.looks == 4  # three busy, then calm
    assert gate.waited == pytest.approx(0.03)
    endless = _Burst(calls=float("inf"))
    gate = Gate(endless, budget=0.1, pause=0.0, clock=_Clock(step=0.01))
    await gate.wait()
    await gate.wait()  # the budget is the gate's, over every wait
    assert endless.looks == 10
    assert gate.budget <= 0.0


async def test_a_turn_waits_only_inside_a_gate() -> None:
    burst = _Burst(calls=2)
    await turn()
    assert burst.looks == 0
    with yielding(Gate(burst, budget=1.0, pause=0.0)):
        await turn()
    assert burst.looks == 3
    await turn()
    assert burst.looks == 3


async def _run_once(job: Callable[[], Awaitable[None]], busy: Callable[[], bool]) -> None:
    """`every` with a short interval, cancelled once `job` has run once."""
    done = asyncio.Event()

    async def once() -> None:
        if not done.is_set():  # once: a later run's would race the caller's checks
            await job()
            done.set()

    runner = asyncio.create_task(every(0.001, once, paused=lambda: False, failed="t", busy=busy))
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_a_job_starts_once_the_burst_is_over() -> None:
    burst = _Burst(calls=5)
    looked: list[int] = []

    async def job() -> None:
        looked.append(burst.looks)

    await _run_once(job, burst)
    assert looked == [6]  # it started at the first calm look, not before


async def test_a_burst_that_does_not_end_delays_a_job_by_at_most_its_budgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(periodic, "BEFORE", 0.05)
    monkeypatch.setattr(periodic, "WITHIN", 0.05)
    endless = _Burst(calls=float("inf"))
    handled: list[int] = []

    async def job() -> None:
        async for part in sliced(range(4 * SLICE)):
            handled.append(len(part))

    await _run_once(job, endless)
    assert sum(handled) == 4 * SLICE
    assert endless.looks > 2  # it did wait, before and within


async def test_a_jobs_slices_wait_while_a_burst_began_meanwhile() -> None:
    states: list[bool] = []
    burst_on = False

    def busy() -> bool:
        states.append(burst_on)
        return burst_on

    async def calm_later() -> None:
        nonlocal burst_on
        await asyncio.sleep(0.1)
        burst_on = False

    async def job() -> None:
        nonlocal burst_on
        async for part in sliced(range(3 * SLICE)):
            if part[0] == 0:  # a burst begins after the first slice
                burst_on = True
                asyncio.get_running_loop().create_task(calm_later())

    await _run_once(job, busy)
    assert states[0] is False and states[-1] is False
    assert states.count(True) >= 2  # the second slice waited for the burst to pass


async def test_a_refresh_that_waits_out_a_burst_counts_what_one_that_did_not_counts(
    engine: AsyncEngine,
) -> None:
    waited, plain = BaselineCache(), BaselineCache()
    async with engine.connect() as conn:
        await waited.refresh(conn, POLICY, NOW)
        await plain.refresh(conn, POLICY, NOW)
    new = 2 * SLICE + 50
    async with engine.begin() as conn:
        for i in range(new):
            ident, at = str(uuid.uuid4()), NOW + timedelta(milliseconds=i)
            await request_in(conn, ident, f"+4670{i:07d}", at=at)
            if i % 2:
                await result_in(conn, ident, "SUCCESSFUL", at=at + timedelta(seconds=1))
    later = NOW + timedelta(seconds=30)
    looks: list[bool] = []

    def busy() -> bool:  # calm to start, then a burst at its turns for a while
        looks.append(1 <= len(looks) <= 6)
        return looks[-1]

    async def job() -> None:
        async with engine.connect() as conn:
            await waited.refresh(conn, POLICY, later)

    await _run_once(job, busy)
    async with engine.connect() as conn:
        await plain.refresh(conn, POLICY, later)
    assert looks.count(True) == 6  # its turns (the apply's slices) waited
    assert waited.snapshot() == plain.snapshot()
    assert len(waited.snapshot()[NUMBER_HISTORY.id]) == new
    assert len(waited.snapshot()[NUMBER_1H.id]) == new // 2


async def test_the_apps_baseline_refresh_waits_while_its_request_path_is_busy(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = 0

    def busy(_admission: Admission) -> bool:  # a burst for the first three looks
        nonlocal looks
        looks += 1
        return looks <= 3

    monkeypatch.setattr(Admission, "busy", property(busy))
    shutil.copy(sqlite_template, tmp_path / "app.db")
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    app = create_app(make_settings(url, tmp_path, baseline_refresh_seconds=1))
    async with app.router.lifespan_context(app):
        baselines = app.state.runtime.baselines
        started = baselines.refreshed_at  # the refresh before serving
        async with asyncio.timeout(30):
            while baselines.refreshed_at == started:  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.05)
    assert looks > 3  # the background refresh ran once the request path was calm
