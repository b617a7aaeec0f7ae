"""Admission: a request event that cannot be decided in time is answered at once.

A decision waits for a counting connection (SQLite: the one writer; PostgreSQL: the held
pool), then holds it while it counts, decides and stores. Past capacity the wait grows
until requests reach their deadline still queueing: each then gets the fallback at the
deadline, having held its HTTP connection the whole time and made the requests behind it
later too, while the fallback's own work (the spool, its replay) took more of the writer.
That loop turned a burst into the fallback for everyone, real users included, and kept it
so after the burst had passed.

So a request is admitted only when the decisions already in flight leave it time: each
lane (connection) serves one decision at a time, each holds it for about `hold` (a moving
average of what holds took lately, under the load there is), and a newcomer would wait
for its share of those ahead of it. On SQLite's writer, decisions come in batches, and a
batch also costs something of its own (`fixed`, learnt: batches of one against big ones),
so a burst after a quiet spell is admitted by what its decisions will cost in the big
batches it makes, not by what a quiet server's batches of one cost each — until a decision
admitted so is late, which says the writer drains slower than that here (a slow CPU). A
request that would not make its budget gets the fallback now, for the cost of answering;
the rest are decided within their deadline; and the moment the load drops, nothing is
shed. Replay of the spool yields while decisions queue (`pressed`), so the fallback's
write-back never competes with live requests.

The estimate must not shut the gate on itself. It did ("lock-in", docs/operations.md): one
stalled batch raised the moving averages, every request but one in flight was shed, the
shed answers — quick, so a closed loop sends the next at once — kept the event loop busy,
every later batch of one waited that long for its turns, and those samples kept the
estimate up long after the stall. Two things break that loop: the estimates are means over
the last `WINDOW` batches leaving out the largest (one stall moves neither), and what
admitted decisions actually took overrules the model: a decision admitted although the
model said no (`Ticket.probe`) that finished well within its budget proves more can be in
flight (`proven` grows by one per round of them); one that finished late halves it.
`proven` only grows while the model is the one shedding, so it never admits past a model
that is right for long: its probes are late, and it halves.

The model also knows nothing of a stall while it lasts (CPU starvation: the writer's thread
or the event loop gets no turn for a few hundred ms): its samples arrive when a batch ends.
Meanwhile the decisions on the lanes age, the deadline answers them with the fallback, a
closed loop sends the next at once, and that one queues behind the stalled batch and is
late too: two waves of late answers for one stall. So admission also looks at what is happening
now, the age of the decisions holding the lanes (CoDel's sojourn time, read at the head of
the queue instead of when it leaves): a newcomer waits for one of them to finish, so while
each lane's has been in flight past the headroom, it gets the fallback at once. That cannot
shut the gate for longer than the stall: the moment a lane's decision is through, its age
is gone, and a free lane is always tried.

None of that sees the queue before receipt. The process is CPU-bound: past capacity the
event loop's turns grow, requests wait unread in their sockets (the deadline runs from
receipt), and the model, fed by decisions' own times, admitted until decisions took most of
their budget — a queue of seconds as Sinch sees it. So a gate comes first, on the loop's
lag (services/loop_lag.py) and the decisions' sojourn: while the least wait of the last
turns (unread, plus the least a decision released in them took) stands above TARGET — well
under the budget, yet above what a closed loop's 64 in flight stand at on a slow, shared
machine (~110 ms at 580 req/s: a target of 100 ms shed 16 % of such a closed loop) — the
share of request events shed grows (an integral controller: it settles at whatever share
the excess needs, cheap shed answers included), and while it stands below, the share falls
twice as fast, to nothing. Least, not mean, is CoDel's test for a standing queue: one long
turn (a collection, the process descheduled), or a closed loop's 64 quick decisions in
flight, do not raise it; and only while request events arrive (at least `lanes` in those
turns) does it count, not for a few slow ones on a shared machine; and only once it has
stood above TARGET for INTERVAL (CoDel's again: decisions a stall held all end at once,
late, and are no queue). It cannot lock in: the share only grows while the loop itself is
late, which shed answers alone keep it only past what no admission can help (over ~2.5x
capacity); and at most MOST is shed by it. A request admitted has its budget less the
loop's last lag (what it likely waited unread), so it is answered, decided or not, within
the deadline as Sinch counts it.

TARGET is the default deadline's; another deadline scales it (TARGET_SHARE of the decision
budget: a queue harms by how much of the deadline it takes). With whole decisions
(PostgreSQL's batches) the model also holds what decisions lately took to the target, not
to HEADROOM of the budget, once CROWD lanes' worth are in flight: each admitted decision
holds its HTTP connection while it takes, and past capacity decisions of 200 ms (well
within 80 % of the budget) kept all of a sender's connections busy while the excess waited
in front of the server, out of sight. Not with a few in flight: right after a stall the
estimate still holds the stall's samples (a test's 200 ms stall left it at 98 ms against
a 100 ms target), and a handful of newcomers would be shed for them.

What decisions took shows a crowd's wait only once those admitted into it are released, a
batch's all at once: past capacity the crowd grew meanwhile (to 500 in flight at twice
capacity), the estimate swung between 30 and 460 ms, and the tail of each swing ended past
its budget (1,300 to 3,200 decisions in 10 s). So once crowds have stood for SUSTAINED, a
crowd's newcomer is also admitted only if those ahead of it drain within its headroom, by
Little's law: in flight times `drain`, the seconds a crowd lately took to release one more,
timed only while a crowd is in flight (a quiet server's releases are its arrivals, not what
it can drain). Not in a flash: Little's law is a steady state's, and a flash's drain counts
the small batches it starts with (a flash of 600 in 0.1 s, decided within 260 ms by what
decisions took, had a third of it shed by its drain).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import islice

from sqlalchemy.ext.asyncio import AsyncConnection

from app.services.aggregates import Counting
from app.services.loop_lag import TURNS, LoopLag

HEADROOM = 0.8  # of the budget a queue may fill: the rest absorbs the estimate's error
WINDOW = 16  # samples the estimates are taken over (means: a queue's wait is a sum of holds,
# so their mean matters, not their spread — less the largest one, a stall's)
PROOF = 0.5  # of its budget a probe took at most to prove one more can be in flight
QUIET_AFTER = 1.0  # seconds after the last shed request before replay may run again
PRESSED = 0.5  # of a newcomer's headroom the estimate fills when background work waits
TARGET = 0.150  # seconds of standing wait (unread + deciding) past which the gate sheds, at
# the default deadline's 300 ms budget; in proportion to another (TARGET_SHARE): a queue's
# harm is how much of the deadline it takes (with 10 s, as under valgrind, 150 ms is none)
TARGET_SHARE = 0.5
STEER = 0.2  # seconds for the shed share to move by 1 at a floor of twice TARGET
STEP = 0.1  # seconds one lag sample steers for at most
INTERVAL = 0.1  # seconds the wait must stand above TARGET before the share grows
MOST = 0.95  # of the request events the gate sheds at most: the rest still try the model
CROWD = 4  # lanes' worth of whole decisions in flight past which each is held to the target
BIG = 16  # decisions in a batch from which its seconds per decision are a decision's own cost
FIXED_MOST = 4.0  # decisions' worth a batch's own cost is taken as at most (a wrong estimate
# admits at most five times too many into a queue behind batches of one)
LEARNT = 4  # batches of one and big batches each seen before a batch's own cost is learnt
DISTRUST = 300.0  # seconds a batch's own cost counts as none after a decision was late with it
SUSTAINED = 1.0  # seconds crowds must have stood before their drain admits (not a flash's)
GAP = 0.5  # seconds without a crowd that end its standing
DRAIN_SECONDS = 1.0  # of crowds in flight their drain rate is taken over (halved past it)
BUSY = 0.15  # of a newcomer's headroom its expected wait fills from which a burst is on
CALM = 0.5  # seconds without that (or a shed) before background work goes on (`busy`)


@dataclass(frozen=True, slots=True, eq=False)
class Ticket:
    """An admitted decision: its budget, when it started, and whether only `proven` let it in."""

    budget: float
    started: float
    probe: bool


class Admission:
    """Admits request events that can be decided within their budget; counts holds."""

    def __init__(
        self,
        *,
        lanes: int,
        hold: float = 0.002,
        whole: bool = False,
        lag: LoopLag | None = None,
        target: float = TARGET,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.lanes = lanes
        self._crowd = CROWD * lanes  # whole decisions in flight from which they are a crowd
        self.whole = whole
        """Holds are whole decisions, admitted to released, under the load there is
        (PostgreSQL group commit, where a newcomer waits for about two batches and for the
        event loop's turns, not for a lane): one is admitted if those took lately fit."""
        self.hold = hold
        self.fixed = 0.0
        """What a batch costs beyond its decisions, in decisions (SQLite's group commit, not
        whole decisions): learnt from batches of one against big ones (`_learn_fixed`)."""
        self._distrusted_until = float("-inf")  # `fixed` counts as none until then
        self._lone: deque[float] = deque(maxlen=WINDOW)  # seconds batches of one took
        self._big: deque[float] = deque(maxlen=WINDOW)  # seconds a decision, in batches of BIG+
        self.proven = float(lanes)  # in flight at once that recently finished on time
        self.in_flight = 0
        self._clock = clock
        self._tickets: dict[Ticket, None] = {}  # in flight, oldest first
        self._batches: deque[tuple[int, float]] = deque([(1, hold)], maxlen=WINDOW)
        self._shed_at = float("-inf")
        self._strained_at = float("-inf")  # when a newcomer's expected wait last filled BUSY
        self._limit = float("inf")  # the last newcomer's budget * HEADROOM
        self.lag = lag
        self.target = target  # the gate's (TARGET)
        self.shedding = 0.0  # the share of request events the gate sheds (lag's floor)
        self._steered = 0  # the lag samples the share has taken in
        self._steered_at = float("-inf")  # when the last of them was taken
        self._credit = 1.0  # admissions the gate owes: grows by 1 - shedding a request
        self._took: deque[tuple[float, float]] = deque()  # (released at, took) lately
        self._arrived = 0  # request events since the last lag sample taken in
        self._above_since = float("inf")  # since when the wait has stood above TARGET
        self._busy = False  # request events arrive: the loop's lag is theirs to wait
        self._arrivals: deque[int] = deque(maxlen=TURNS)  # ... over the last samples
        self._crowd_mark: float | None = None  # a crowd is in flight: its last release, or
        # when it gathered (None: no crowd)
        self._crowd_seconds = 0.0  # crowds were in flight this long, lately,
        self._crowd_released = 0.0  # ... and this many of their decisions were released
        self._crowded_at = float("-inf")  # when a newcomer last found a crowd in flight
        self._crowd_since = float("inf")  # ... and since when crowds have stood (GAP apart)
        self.drain = 0.0
        """Seconds a crowd of whole decisions takes to release one more, lately (0: not
        known yet): a newcomer behind `in_flight` of them waits about that many times."""

    def admit(self, budget: float) -> Ticket | None:
        """A ticket if a decision started now would finish within `budget` seconds (it is in
        flight until `release`, late work included); None: answer with the fallback now."""
        now = self._clock()
        if self.lag is not None:
            budget -= self._gated()
            if budget <= 0.0:
                self._shed_at = time.monotonic()
                return None
        rounds = 1 if self.whole else self.in_flight // self.lanes + 1
        expected = (rounds + self.fixed) * self.hold
        self._limit = budget * HEADROOM
        if expected > self._limit * BUSY:
            self._strained_at = now
        # Whole decisions (PostgreSQL's batches) are held to the gate's target too once a
        # crowd is in flight: each one admitted holds its HTTP connection that long, and
        # Sinch's connections are finite. Not a few: right after a stall the estimate holds
        # the stall's samples, and a handful of newcomers would be shed for them.
        crowded = self.whole and self.in_flight >= self._crowd
        fits = expected <= (min(self._limit, self.target) if crowded else self._limit)
        if crowded and self._sustained(now):  # behind every one in flight (Little's law)
            fits = fits and (self.in_flight + 1) * self.drain <= self._limit
        # Fewer in flight than have lately finished on time (at least a free lane: no queue
        # to wait in) is always worth trying, and tells whether the estimate is stale; not
        # behind lanes that have held their decisions past the headroom already (stalled).
        stalled = self.waited(now) > budget * HEADROOM
        if not stalled and (fits or self.in_flight < self.proven):
            self.in_flight += 1
            if self.whole and self.in_flight == self._crowd:
                self._crowd_mark = now  # a crowd gathers: its drain is timed from here
            ticket = Ticket(budget, now, probe=not fits)
            self._tickets[ticket] = None
            return ticket
        self._shed_at = time.monotonic()
        return None

    def _gated(self) -> float:
        """How long a newcomer waited unread (the loop's lag, while request events arrive;
        a lone one after a long turn of an otherwise quiet loop was not in it), or the whole
        budget if the gate sheds it (the share `_steer` sets)."""
        lag = self.lag
        assert lag is not None
        lag.watch()
        self._arrived += 1
        if lag.samples != self._steered:
            self._steer(lag)
        if self.shedding > 0.0:
            self._credit += 1.0 - self.shedding
            if self._credit < 1.0:
                return float("inf")
            self._credit -= 1.0
        return lag.late if self._busy else 0.0

    def _steer(self, lag: LoopLag) -> None:
        """Move the shed share by how far the standing wait (the lag's floor and the
        decisions' sojourn) is from TARGET, for as long as it was (since the last sample
        taken in, at most STEP): integral, so it settles at whatever share the excess
        needs, and drops back to nothing when the load does."""
        self._steered = lag.samples
        # Only a queue of request events can be shed away: not one slow decision, nor a
        # loop made late by other processes while this one has little to do.
        self._arrivals.append(self._arrived)
        self._arrived = 0
        self._busy = busy = sum(self._arrivals) >= max(2, self.lanes)
        wait = lag.floor + self.sojourn(lag.since) if busy else 0.0
        error = min(1.0, (wait - self.target) / self.target)  # at least -1
        if error <= 0.0:
            self._above_since = float("inf")
        elif self._above_since == float("inf"):
            self._above_since = lag.at
        if error > 0.0 and lag.at - self._above_since < INTERVAL:
            error = 0.0  # not standing yet
        seconds = min(STEP, lag.at - self._steered_at)
        self._steered_at = lag.at
        # Down twice as fast as up: once the load drops, what is left of the share sheds
        # request events the process could decide (the loop on time says so).
        share = self.shedding + error * seconds / (STEER if error > 0 else STEER / 2)
        self.shedding = min(MOST, max(0.0, share))
        if self.shedding == 0.0:
            self._credit = 1.0

    def sojourn(self, since: float) -> float:
        """The least time an admitted decision took of those released since `since` (a
        standing queue inside the server; none released: none seen, the stall check's)."""
        took = self._took
        while took and took[0][0] < since:
            took.popleft()
        return min((seconds for _, seconds in took), default=0.0)

    def release(self, ticket: Ticket | None = None, *, now: float | None = None) -> None:
        """An admitted decision's work ended (late work included); with its ticket, what it
        took tells whether `proven` grows (a probe on time) or halves (late)."""
        self.in_flight -= 1
        if ticket is None:
            if self._tickets:  # the oldest: decisions finish in the order they came
                del self._tickets[next(iter(self._tickets))]
            return
        self._tickets.pop(ticket, None)
        ended = self._clock() if now is None else now
        took = ended - ticket.started
        if self.lag is not None:  # for `sojourn`: since the lag's oldest probe
            recent, since = self._took, self.lag.since
            recent.append((ended, took))
            while recent and recent[0][0] < since:  # `now` given may be before the probes'
                recent.popleft()
        if self.whole:
            self.record(1, took)
            self._drained(ended)
        if took > ticket.budget:
            self.proven = max(float(self.lanes), self.proven / 2)
            if self.fixed > 0.0:  # admitted by batches cheaper than the writer drained them
                self._distrusted_until = ended + DISTRUST
                self.fixed = 0.0
                self.hold = self._hold()
        elif ticket.probe and took <= ticket.budget * PROOF:
            self.proven += 1.0 / self.proven  # one more per round of `proven` on time

    def _sustained(self, now: float) -> bool:
        """A crowd is in flight (the caller knows) and crowds have stood for SUSTAINED, with
        no gap between them longer than GAP: a steady state, where Little's law holds."""
        if now - self._crowded_at > GAP:
            self._crowd_since = now
        self._crowded_at = now
        return now - self._crowd_since >= SUSTAINED

    def _drained(self, ended: float) -> None:
        """A whole decision released at `ended`, the time since the last release (or since
        a crowd gathered) counted while a crowd was in flight: what the server drains a
        second while it has a queue, the shed answers' cost included, over about the last
        DRAIN_SECONDS of crowds (halved past it). Decisions' own times show a queue only once
        the ones admitted into it are released, all of a batch at once: past capacity in
        flight grew meanwhile, and those admitted then ended past their budget."""
        if self.in_flight + 1 < self._crowd or self._crowd_mark is None:
            return
        self._crowd_seconds += ended - self._crowd_mark
        self._crowd_released += 1.0
        self._crowd_mark = ended if self.in_flight >= self._crowd else None
        if self._crowd_released >= WINDOW:
            self.drain = self._crowd_seconds / self._crowd_released
        if self._crowd_seconds > DRAIN_SECONDS:
            self._crowd_seconds /= 2.0
            self._crowd_released /= 2.0

    def waited(self, now: float) -> float:
        """How long the decisions on the lanes have been in flight: the youngest of the
        `lanes` oldest (0 while a lane is free). A newcomer waits for one of them to finish."""
        if len(self._tickets) < self.lanes:
            return 0.0
        on_lane = next(islice(self._tickets, self.lanes - 1, None))
        return now - on_lane.started

    @property
    def pressed(self) -> bool:
        """Decisions are queueing, or some were shed a moment ago: background work waits.

        With whole holds (PostgreSQL's batches) more decisions in flight than lanes is how
        the lanes are used, not a queue: a steady load below capacity always has them, and
        replay waited behind it for as long as it lasted. There decisions queue when what
        they take lately fills more than PRESSED of a newcomer's headroom; background work
        stops there, before admission sheds, and what it adds to the holds stops it too."""
        if time.monotonic() - self._shed_at < QUIET_AFTER:
            return True
        if self.whole:
            return self.in_flight > 0 and self.hold > self._limit * PRESSED
        return self.in_flight >= self.lanes

    @property
    def busy(self) -> bool:
        """A burst of request events is on: background work waits (store/turns.py).

        True while the gate sheds, and for CALM after a request was shed or a newcomer's
        expected wait filled more than BUSY of its headroom (on SQLite's writer, ~35 ms: a
        steady 300/s on the developer's machine stayed under it but for moments, each burst
        of range-pumping over it throughout). The baseline refresh that ran into a burst took
        its reads' CPU (and, on SQLite, the GIL: its rows are built on the reader's thread)
        from the decisions, and the burst's excess got the fallback: real users too."""
        if self.shedding > 0.0 or time.monotonic() - self._shed_at < CALM:
            return True
        return self._clock() - self._strained_at < CALM

    def timed(self, counting: Counting) -> Counting:
        """`counting` that reports how long each connection was held."""

        @asynccontextmanager
        async def scope() -> AsyncIterator[AsyncConnection]:
            started: float | None = None
            try:
                async with counting() as conn:
                    started = time.perf_counter()
                    yield conn
            finally:  # the hold includes the commit
                if started is not None:
                    self.record(1, time.perf_counter() - started)

        return scope

    def record(self, decisions: int, seconds: float, *, overhead: float = 0.0) -> None:
        """`decisions` held a lane for `seconds` one after another; a batch of them also
        waited `overhead` for its hops to and from the writer's thread. That wait is the
        event loop's turn: under a burst, what the loop runs meanwhile (the burst's requests
        read and answered) is as long as the batch itself, and the writer drains no faster
        than both; so it counts in the batch's time, per decision, not once per queue."""
        seconds += overhead
        if not self.whole:
            if decisions == 1:
                self._lone.append(seconds)
            elif decisions >= BIG:
                self._big.append(seconds / decisions)
            self._learn_fixed()
        self._batches.append((decisions, seconds))
        self.hold = self._hold()

    def _hold(self) -> float:
        """What a decision holds the lane for: each recent batch's seconds less its own cost,
        per decision."""
        fixed = self.fixed
        return _mean_but_largest([t / (n + fixed) for n, t in self._batches])

    def _learn_fixed(self) -> None:
        """A batch's own cost, in decisions: what a batch of one took against what a
        decision took in big batches (SQLite's group commit: its BEGIN, its policy version
        read, the first statements' warm-up of a transaction, its COMMIT, its hops — about
        twice a decision's own cost on the developer's machine, 0.7 to 3 times as the load
        went). Batches of one are all a quiet server sees, so without this a burst after a
        quiet spell was admitted as if each of its decisions cost a whole batch of one:
        flash crowds that the writer decided in 130 to 200 ms had a quarter to a half of
        them shed. Both means leave their largest out, as `hold` does; until LEARNT of each
        were seen the cost is taken as none (each decision of a burst as dear as a batch of
        one: shedding more, as before); bounded by FIXED_MOST. Whole decisions (PostgreSQL)
        have none: each is timed from its admission to its release, whatever its batch.

        A decision that ends past its budget while the cost counts says the writer drained
        the queue slower than the big batches promised (on a slow CPU the burst's own
        requests, read and answered on the loop meanwhile, cost more than the batches' hops
        show): the cost then counts as none for DISTRUST seconds, each decision of a burst as
        dear as a batch of one again (on a CPU three times slower than the developer's, flash
        crowds had up to 230 decisions a flash answered late with the cost learnt, and none
        but the largest flash's without it)."""
        if len(self._lone) < LEARNT or len(self._big) < LEARNT:
            return
        if self._clock() < self._distrusted_until:
            return
        each = _mean_but_largest(self._big)
        if each > 0.0:
            ratio = _mean_but_largest(self._lone) / each - 1.0
            self.fixed = min(FIXED_MOST, max(0.0, ratio))


def _mean_but_largest(samples: Sequence[float]) -> float:
    """The mean of `samples` without the largest one (a window of `hold`s starts with its
    initial guess)."""
    if len(samples) == 1:
        return samples[0]
    return (sum(samples) - max(samples)) / (len(samples) - 1)
