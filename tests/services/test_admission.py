"""Admission (services/admission.py) cannot shut the gate on itself: a stalled batch does not
make it shed every later request once the stall is over (the "lock-in" of
docs/operations.md), and an estimate that stays too high is overruled by decisions that
were admitted anyway and finished on time."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection

from app.main import create_app
from app.services.admission import (
    BIG,
    CROWD,
    DISTRUST,
    DRAIN_SECONDS,
    FIXED_MOST,
    GAP,
    LEARNT,
    PROOF,
    SUSTAINED,
    TARGET,
    WINDOW,
    Admission,
    Ticket,
)
from app.services.loop_lag import IDLE_AFTER, PERIOD, LoopLag
from app.sinch import samples
from tests.conftest import make_settings
from tests.support import SinchSender

BUDGET = 0.400


def _fill(admission: Admission) -> list[Ticket]:
    """Admit until admission sheds; the tickets."""
    tickets = []
    while ticket := admission.admit(BUDGET):
        tickets.append(ticket)
    return tickets


def test_one_stalled_batch_moves_neither_estimate() -> None:
    admission = Admission(lanes=1)
    for _ in range(8):
        admission.record(40, 0.004, overhead=0.001)
    # Descheduled: 36 decisions, 405 ms on the writer's thread, 652 ms in all.
    admission.record(36, 0.405, overhead=0.247)
    assert admission.hold < 0.001
    assert len(_fill(admission)) > 64


def test_decisions_on_time_overrule_an_estimate_that_stays_too_high() -> None:
    admission = Admission(lanes=1)
    for _ in range(16):  # every batch lately looked slow: the model sheds all but one
        admission.record(1, 0.001, overhead=0.400)
    (only,) = _fill(admission)
    admission.release(only, now=only.started + 0.010)
    for _ in range(40):  # each round, what was admitted finishes on time
        for ticket in _fill(admission):
            admission.release(ticket, now=ticket.started + 0.010)
    assert len(_fill(admission)) >= 8, "the probes on time did not open the gate"


def test_a_late_decision_halves_what_the_probes_proved() -> None:
    admission = Admission(lanes=1)
    for _ in range(16):
        admission.record(1, 0.001, overhead=0.400)
    for _ in range(20):
        for ticket in _fill(admission):
            admission.release(ticket, now=ticket.started + 0.010)
    proven = admission.proven
    tickets = _fill(admission)
    late = tickets.pop()
    admission.release(late, now=late.started + BUDGET + 0.1)
    assert admission.proven == proven / 2
    slow = tickets.pop()  # on time but not well within: no proof either way
    admission.release(slow, now=slow.started + BUDGET * (PROOF + 1) / 2)
    assert admission.proven == proven / 2


async def test_a_stalled_batch_does_not_shed_the_requests_after_it(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """The writer's thread stalls for a second (as when the process is descheduled); once it
    is over, a burst the writer decides well within the deadline is decided, not shed.
    (With moving averages the stall alone made the hold estimate ten times too high.)"""
    shutil.copy(sqlite_template, tmp_path / "app.db")
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", tmp_path)
    settings = settings.model_copy(update={"decision_deadline_ms": 2000})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            sender = SinchSender(http, path=settings.callback_path)
            runtime = app.state.runtime
            numbers = iter(f"+4670{n}" for n in random.sample(range(1_000_000, 9_999_999), 72))
            for _ in range(4):  # what decisions take here, learnt
                warm = [samples.request_event(number=next(numbers)) for _ in range(8)]
                await asyncio.gather(*(sender.post(event) for event in warm))

            async def stall(_conn: AsyncConnection) -> None:
                time.sleep(1.0)  # noqa: ASYNC251 - on the writer's thread: the writer stalls, not the loop

            await runtime.intake._decider.scope.group.run(stall)
            registry = runtime.metrics.registry
            before = registry.get_sample_value(
                "verifyguard_fallback_answers_total", {"cause": "overload"}
            )
            burst = [samples.request_event(number=next(numbers)) for _ in range(40)]
            replies = await asyncio.gather(*(sender.post(event) for event in burst))
            shed = registry.get_sample_value(
                "verifyguard_fallback_answers_total", {"cause": "overload"}
            )
    assert {r.status_code for r in replies} == {200}
    assert (shed or 0.0) - (before or 0.0) <= 4, f"{shed} shed after the stall was over"


LONE = 0.0012  # seconds a batch of one takes, hops included (SQLite's group commit)
EACH = 0.0003  # seconds a decision takes in a big batch: the batch's own cost is 3 decisions


def _quiet_after_a_burst(admission: Admission) -> None:
    """What a quiet server saw: batches of one, with a burst's big batches among them."""
    for _ in range(LEARNT):
        admission.record(1, LONE - 0.0002, overhead=0.0002)
        admission.record(40, 40 * EACH - 0.001, overhead=0.001)
    for _ in range(20):  # the quiet spell since: batches of one only
        admission.record(1, LONE - 0.0002, overhead=0.0002)


def test_a_burst_after_a_quiet_spell_is_admitted_by_what_a_batched_decision_costs() -> None:
    """A quiet server's batches are of one, and a batch of one costs its BEGIN, its policy
    version read and its COMMIT besides the decision. A burst is decided in big batches, at
    a quarter of that a decision here: it is admitted as far as those fill the headroom
    (a flash crowd that the writer decided in 130 ms had a quarter of it shed before)."""
    admission = Admission(lanes=1, clock=_Clock())
    _quiet_after_a_burst(admission)
    assert admission.fixed == pytest.approx(LONE / EACH - 1)
    admitted = len(_fill(admission))
    fill = 0.8 * BUDGET / EACH - admission.fixed  # the headroom's worth of batched decisions
    assert fill - 2 <= admitted <= fill + 1, admitted


def test_a_server_that_never_saw_a_big_batch_admits_by_its_batches_of_one() -> None:
    """Nothing tells a batch's own cost from its decisions' yet: each decision of a burst is
    expected to cost what a batch of one did (the estimate errs towards shedding)."""
    admission = Admission(lanes=1, clock=_Clock())
    for _ in range(20):
        admission.record(1, LONE - 0.0002, overhead=0.0002)
    assert admission.fixed == 0.0
    assert len(_fill(admission)) <= 0.8 * BUDGET / LONE + 1


def test_a_batchs_own_cost_is_bounded_and_whole_decisions_have_none() -> None:
    admission = Admission(lanes=1, clock=_Clock())
    for _ in range(LEARNT + 1):  # batches of one 20 times slower than a batched decision
        admission.record(1, 20 * EACH)
        admission.record(BIG, BIG * EACH)
    assert admission.fixed == FIXED_MOST
    whole = Admission(lanes=8, whole=True, clock=_Clock())
    for _ in range(LEARNT + 1):
        whole.record(1, LONE)
        whole.record(BIG, BIG * EACH)
    assert whole.fixed == 0.0


def test_a_late_decision_makes_the_learnt_batch_cost_count_as_none_for_a_while() -> None:
    """On a slow CPU a burst's big batches drain slower than they promise (the burst's own
    requests are read and answered on the loop meanwhile): a decision admitted by the learnt
    cost that ends late makes it count as none, each decision of a burst as dear as a batch
    of one again, for DISTRUST seconds, whatever batches come meanwhile; then it is learnt
    again."""
    clock = _Clock()
    admission = Admission(lanes=1, clock=clock)
    _quiet_after_a_burst(admission)
    assert admission.fixed == pytest.approx(LONE / EACH - 1)
    tickets = _fill(admission)
    admission.release(tickets[0], now=clock.now + 1.5 * BUDGET)  # the writer fell behind
    for ticket in tickets[1:]:
        admission.release(ticket, now=clock.now + 0.5 * BUDGET)
    assert admission.fixed == 0.0
    clock.now += DISTRUST / 2
    _quiet_after_a_burst(admission)  # more bursts meanwhile teach it nothing
    assert admission.fixed == 0.0
    assert len(_fill(admission)) <= 0.8 * BUDGET / LONE + 1  # as if it never saw a big batch
    clock.now += DISTRUST / 2 + 2 * BUDGET  # past the late decision's end + DISTRUST
    _quiet_after_a_burst(admission)
    assert admission.fixed == pytest.approx(LONE / EACH - 1)


def test_the_loops_wait_for_a_batch_counts_as_its_decisions_time() -> None:
    """A batch's hops back to the event loop wait for whatever the loop runs meanwhile (a
    burst's requests read and answered): the writer drains no faster than that, so it is
    part of what each decision of the batch costs, not a constant per queue."""
    admission = Admission(lanes=1, clock=_Clock())
    for _ in range(WINDOW):
        admission.record(40, 0.012, overhead=0.012)  # as long waiting for the loop as running
    assert admission.hold == pytest.approx(0.0006)
    assert len(_fill(admission)) <= 0.8 * BUDGET / 0.0006 + 1


def _admitted(admission: Admission, wanted: int) -> list[Ticket]:
    """Admit up to `wanted`, stopping at the first shed; the tickets."""
    tickets = []
    while len(tickets) < wanted and (ticket := admission.admit(BUDGET)):
        tickets.append(ticket)
    return tickets


def test_whole_decisions_admit_by_what_they_took_not_by_queue_length() -> None:
    """PostgreSQL group commit: a newcomer waits for about two batches, however many are in
    flight, so decisions that took little lately admit a burst far past the lanes, and
    decisions that took most of their budget shed all but the lanes' probes."""
    quick = Admission(lanes=8, whole=True)
    for ticket in _admitted(quick, 16):
        quick.release(ticket, now=ticket.started + 0.020)
    assert len(_admitted(quick, 200)) == 200  # per lane: (in flight / 8 + 1) x hold
    slow = Admission(lanes=8, whole=True)
    for ticket in _admitted(slow, 16):
        slow.release(ticket, now=ticket.started + 0.9 * ticket.budget)
    assert len(_admitted(slow, 200)) <= 8


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_newcomers_are_shed_while_the_lane_is_stalled_not_queued_behind_it() -> None:
    """The writer stalls (the process starved of CPU) with a batch on it: the estimate still
    says a newcomer fits, but it would only wait behind the stalled batch and answer late;
    it gets the fallback now. The moment the batch is through, newcomers are decided again."""
    clock = _Clock()
    admission = Admission(lanes=1, clock=clock)
    for _ in range(8):
        admission.record(32, 0.032, overhead=0.001)  # 1 ms a decision: 32 fit easily
    batch = _admitted(admission, 32)
    assert len(batch) == 32
    clock.now += BUDGET * 0.5  # in flight for half its budget: a slow batch, not a stall
    assert admission.admit(BUDGET), "a slow batch is no reason to shed"
    clock.now += BUDGET * 0.4  # the batch has now held the lane past the headroom
    shed = [admission.admit(BUDGET) for _ in range(40)]
    assert shed == [None] * 40, "admitted behind a stalled lane: late answers"
    for ticket in batch:  # the stalled batch is through
        admission.release(ticket)
    assert admission.admit(BUDGET), "still shedding once the lane moved"


def test_a_stall_on_one_lane_leaves_the_free_lanes_open() -> None:
    clock = _Clock()
    admission = Admission(lanes=2, clock=clock)
    assert admission.admit(BUDGET)
    clock.now += BUDGET * 2  # that one is stuck on its lane
    assert admission.admit(BUDGET), "a lane is free: tried whatever the other is doing"
    assert admission.admit(BUDGET), "the other lane is moving"
    clock.now += BUDGET * 0.9
    assert not admission.admit(BUDGET), "both lanes held past the headroom"


def test_a_steady_load_under_capacity_is_never_shed() -> None:
    """Four decisions every 10 ms, each answered 30 ms after admission (a batch's wait and
    its own work) on one lane, with the estimate learnt from such batches: nothing is shed."""
    clock = _Clock()
    admission = Admission(lanes=1, clock=clock)
    in_flight: list[Ticket] = []
    for _ in range(1000):
        admission.record(4, 0.008, overhead=0.002)
        while in_flight and in_flight[0].started <= clock.now - 0.030:
            admission.release(in_flight.pop(0))
        for _ in range(4):
            ticket = admission.admit(BUDGET)
            assert ticket, f"shed with {admission.in_flight} in flight"
            in_flight.append(ticket)
        clock.now += 0.010


def _lagging(clock: _Clock) -> tuple[Admission, LoopLag]:
    lag = LoopLag(clock=clock)
    return Admission(lanes=8, whole=True, lag=lag, clock=clock), lag


def _turns(admission: Admission, lag: LoopLag, clock: _Clock, *, late: float, turns: int) -> int:
    """`turns` probes `late` seconds late, a probe every PERIOD + `late`, with ten request
    events admitted (and released at once) between two; how many of them were shed."""
    shed = 0
    for _ in range(turns):
        clock.now += PERIOD + late
        lag.record(clock.now, late)
        for _ in range(10):
            ticket = admission.admit(BUDGET)
            if ticket is None:
                shed += 1
            else:
                admission.release(ticket, now=clock.now + 0.005)
    return shed


def test_a_loop_late_turn_after_turn_sheds_most_and_nothing_once_it_is_not() -> None:
    """Past capacity the event loop runs later and later (requests wait unread in their
    sockets, where the deadline cannot see them): the share shed grows while it does; the
    moment the loop is on time again, nothing is shed."""
    clock = _Clock()
    admission, lag = _lagging(clock)
    _turns(admission, lag, clock, late=3 * TARGET, turns=20)
    assert _turns(admission, lag, clock, late=3 * TARGET, turns=10) >= 0.9 * 100
    _turns(admission, lag, clock, late=0.0, turns=12)  # 0.12 s on time
    assert _turns(admission, lag, clock, late=0.0, turns=10) == 0
    assert admission.shedding == 0.0


def test_the_gate_settles_where_the_excess_is_shed_not_at_all_or_nothing() -> None:
    """The loop is late in proportion to what is admitted past capacity (a queue that only
    grows while more is admitted than the loop can serve): the share shed settles near what
    keeps it at TARGET, and answers go on being decided."""
    clock = _Clock()
    admission, lag = _lagging(clock)
    admitted = []
    for _ in range(400):
        # Capacity: 3 of every 10 request events; a standing queue grows past it.
        late = max(0.0, TARGET * (1 + (admission.in_flight - 3) / 3))
        clock.now += PERIOD
        lag.record(clock.now, late)
        for ticket in list(admission._tickets):
            admission.release(ticket, now=clock.now)
        admitted.append(sum(admission.admit(BUDGET) is not None for _ in range(10)))
    settled = admitted[200:]
    assert 1 <= sum(settled) / len(settled) <= 5


def test_one_long_turn_sheds_nothing_and_takes_what_it_waited_from_the_budget() -> None:
    """A collection or a descheduled process makes one turn of the loop long: not a
    standing queue, so nothing is shed for it; the request events read after it waited
    that long unread, and have that much less budget (their deadline runs from Sinch's
    send, as near as the process can tell)."""
    clock = _Clock()
    admission, lag = _lagging(clock)
    _turns(admission, lag, clock, late=0.002, turns=10)
    clock.now += 0.150
    lag.record(clock.now, 0.150)
    ticket = admission.admit(BUDGET)
    assert ticket is not None and ticket.budget == BUDGET - 0.150
    admission.release(ticket, now=clock.now + 0.005)
    assert _turns(admission, lag, clock, late=0.002, turns=10) == 0
    assert admission.shedding == 0.0


def test_a_standing_queue_inside_the_server_sheds_though_the_loop_is_on_time() -> None:
    """Decisions wait for their batches (the database, not the event loop, is behind): every
    one released lately took long, so the gate sheds; quick ones, however many in flight at
    once (a closed loop's 64), do not make it shed."""
    clock = _Clock()
    admission, lag = _lagging(clock)
    for _ in range(40):
        clock.now += PERIOD
        lag.record(clock.now, 0.001)
        tickets = [admission.admit(BUDGET) for _ in range(64)]
        for ticket in tickets:
            if ticket is not None:
                admission.release(ticket, now=clock.now + 0.030)
    assert admission.shedding == 0.0, "a closed loop's quick decisions were taken for a queue"
    for _ in range(40):
        clock.now += PERIOD
        lag.record(clock.now, 0.001)
        for _ in range(10):
            ticket = admission.admit(BUDGET)
            if ticket is not None:
                admission.release(ticket, now=clock.now + 2.5 * TARGET)
    assert admission.shedding > 0.5


def test_a_few_slow_decisions_on_a_late_loop_are_no_queue_to_shed() -> None:
    """Other processes take the CPU (a shared machine): the loop runs late and the odd
    request event takes long, but there are too few to make a queue: none is shed."""
    clock = _Clock()
    admission, lag = _lagging(clock)
    for turn in range(100):
        clock.now += PERIOD + 0.2
        lag.record(clock.now, 0.2)
        if turn % 3 == 0:
            ticket = admission.admit(BUDGET * 4)
            assert ticket is not None
            admission.release(ticket, now=clock.now + 0.3)
    assert admission.shedding == 0.0


async def test_the_probe_runs_while_watched_and_stops_when_not() -> None:
    clock = _Clock()
    clock.now = time.perf_counter()
    lag = LoopLag(clock=clock)
    lag.watch()
    await asyncio.sleep(0)  # the probe's first turn is due a period later: it ran not yet
    assert lag.samples == 0
    clock.now += PERIOD + 0.25
    await asyncio.sleep(PERIOD)  # due after the probe's turn: it ran, 0.25 s late by `clock`
    assert lag.samples == 1 and lag.late >= 0.25
    clock.now += IDLE_AFTER + 1.0  # nobody asked for a while: the next probe is the last
    await asyncio.sleep(PERIOD * 2)
    ran = lag.samples
    await asyncio.sleep(PERIOD * 3)
    assert lag.samples == ran and lag.late == 0.0
    lag.watch()  # asked again: it starts again
    await asyncio.sleep(PERIOD * 2)
    assert lag.samples > ran
    lag.stop()


def test_whole_decisions_are_held_to_the_gates_target_not_most_of_the_budget() -> None:
    """On PostgreSQL each admitted decision holds its HTTP connection while it takes: past
    capacity, decisions that take 200 ms of a 300 ms budget are not admitted beyond a crowd
    (CROWD lanes' worth) when the target is 150 ms (80 % of the budget, 240 ms, admitted
    them all); a few in flight still are (right after a stall, the estimate holds it)."""
    admission = Admission(lanes=2, whole=True, target=0.150)
    for _ in range(20):
        admission.record(1, 0.200)
    admitted = [admission.admit(0.300) for _ in range(3 * CROWD * 2)]
    assert sum(ticket is not None for ticket in admitted) == CROWD * 2, "up to the crowd"
    fast = Admission(lanes=2, whole=True, target=0.150)
    for _ in range(20):
        fast.record(1, 0.020)
    assert all(fast.admit(0.300) for _ in range(3 * CROWD * 2)), "within the target: all in"


def _crowd(
    clock: _Clock, *, lanes: int, gap: float, releases: int
) -> tuple[Admission, list[Ticket]]:
    """Whole decisions with a crowd (past CROWD lanes' worth) in flight, one released every
    `gap` seconds and one admitted in its place, `releases` times: quick decisions (their
    times fit the target), so only how fast the crowd drains can shed."""
    admission = Admission(lanes=lanes, whole=True, target=0.150, clock=clock)
    tickets = _admitted(admission, CROWD * lanes + 1)
    _drain(admission, tickets, clock, gap=gap, releases=releases)
    return admission, tickets


def _drain(
    admission: Admission, tickets: list[Ticket], clock: _Clock, *, gap: float, releases: int
) -> None:
    for _ in range(releases):
        clock.now += gap
        admission.release(tickets.pop(0))
        ticket = admission.admit(BUDGET)
        assert ticket, "a crowd that drains on time is not shed"
        tickets.append(ticket)


def test_a_standing_crowd_is_admitted_only_as_far_as_it_drains_within_the_headroom() -> None:
    """Past capacity, decisions admitted into a growing crowd show their wait only when
    they are released: admitted by what decisions took lately, the crowd grew for that long
    and its tail ended past the budget. Once crowds have stood for SUSTAINED, a crowd that
    releases one decision every 2 ms admits a newcomer only while the ones ahead of it drain
    within its headroom (80 % of 400 ms: 160 in flight), though every decision released
    took well within the target."""
    clock = _Clock()
    admission, _ = _crowd(clock, lanes=2, gap=0.002, releases=int(SUSTAINED / 0.002) + 10)
    assert admission.hold < 0.150 / 4, "the decisions' own times fit the target"
    assert admission.drain == pytest.approx(0.002)
    _admitted(admission, 1000)
    assert admission.in_flight == pytest.approx(0.8 * BUDGET / 0.002, abs=1)


def test_a_flash_crowd_is_admitted_by_what_decisions_take_not_by_its_drain() -> None:
    """A crowd that has stood for less than SUSTAINED is a flash: its drain, timed from
    when it gathered, counts a quiet server's small first batches, and a flash the server
    decides within the deadline (600 in 0.1 s, all of them within 260 ms) had a third of it
    shed by it. Its newcomers are admitted by what decisions took, as before the drain."""
    clock = _Clock()
    admission, tickets = _crowd(clock, lanes=2, gap=0.002, releases=int(SUSTAINED / 0.002) + 10)
    while tickets:  # the standing crowd drains away, and the server is quiet
        admission.release(tickets.pop())
    clock.now += 2 * GAP
    assert len(_admitted(admission, 1000)) == 1000, "a flash: by what decisions take"


def test_the_drain_is_timed_only_while_a_crowd_is_in_flight() -> None:
    """Releases far apart with a few in flight are a quiet server's arrivals, not its
    drain: they set none, and a burst after them is admitted by what decisions take."""
    clock = _Clock()
    admission = Admission(lanes=2, whole=True, target=0.150, clock=clock)
    for _ in range(100):
        ticket = admission.admit(BUDGET)
        assert ticket
        clock.now += 0.010
        admission.release(ticket)
        clock.now += 1.0
    assert admission.drain == 0.0
    assert len(_admitted(admission, 500)) == 500


def test_a_crowds_drain_follows_a_server_that_slowed_down() -> None:
    """The drain is taken over about the last DRAIN_SECONDS of crowds: a server that drains
    three times slower than a moment ago (a slower machine, costlier shed answers) admits
    by its new rate within a few seconds of crowds, not by the old."""
    clock = _Clock()
    admission, tickets = _crowd(clock, lanes=2, gap=0.001, releases=2000)
    assert admission.drain == pytest.approx(0.001)
    _drain(admission, tickets, clock, gap=0.003, releases=int(3 * DRAIN_SECONDS / 0.003))
    assert admission.drain == pytest.approx(0.003, rel=0.2)
