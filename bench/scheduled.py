"""Load offered the way Sinch offers it: each callback is an HTTP request of its own, sent at
its scheduled time on a free keep-alive connection or, when none is free, on a new one.

A fixed pool of connections that each wait for their answer (loadgen's open loop) cannot
offer more than the server answers: past capacity the excess queues in the load generator,
the server never sees it, and the latency reads as if the server took seconds to answer.
Sinch has no such queue, so neither does this, up to `cap` connections (a bench's bound on
sockets, far above what a server within its deadline needs: rate x deadline); a request
that finds all `cap` busy waits for the first to free, and is counted (`waited`).

This generator shares the machine (and its own event loop) with what it measures: past
capacity it may itself send late, and the CPU it takes is the server's. So it runs as event
loop callbacks: connections are protocols whose answers httptools parses, no task per
request, and the scheduler dispatches what is due each millisecond tick or answer. Each
answer keeps how late its request was dispatched (`lag`, the generator's own) and written
(`unsent`: the lag and the wait for a connection), and the pool the generator's CPU, so a
report tells the server's share of the latency from the generator's.

The load comes in segments (an over-capacity one, then one the server can carry) on the
same connections, scheduled back to back: the load drops while the first segment's answers
are still due, as it would. Latency is from each request's scheduled send time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

# The scheduler's shortest sleep: requests due within it go out together when it ends, or
# when an answer comes in first (the event loop's timers are in milliseconds; shorter sleeps
# only spin the loop).
TICK = 0.001


@dataclass(frozen=True, slots=True)
class Segment:
    """`seconds` of load at `rate` req/s; `mark` is printed when it begins (None: silent)."""

    rate: float
    seconds: float
    mark: str | None = None


@dataclass(slots=True)
class Answer:
    """A request's answer (while it is in flight: the request, its answer fields unset)."""

    scheduled: float
    latency: float  # from the scheduled send time to the answer's end
    status: bytes
    allowed: bool
    unsent: float = 0.0  # from the scheduled send time to the request's write
    lag: float = 0.0  # from the scheduled send time to its dispatch: the generator's own


@dataclass(slots=True)
class Pool:
    """The connections: idle ones reused (last freed first), new ones opened up to `cap`."""

    cap: int
    idle: list[_Connection] = field(default_factory=list)
    open: int = 0
    opened: int = 0
    busiest: int = 0  # connections in use at once, at most
    waited: int = 0  # requests that found all `cap` connections busy
    connect_errors: int = 0
    reopened: int = 0  # reused connections the server closed under a request, sent again
    dropped: int = 0  # idle connections the server closed (a new one opened when needed)
    backlog: deque[Answer] = field(default_factory=deque)  # requests waiting
    cpu: float = 0.0  # the generator's CPU seconds a second while it offered

    def stats(self) -> dict[str, float]:
        return {
            "connection_cap": self.cap,
            "connections_opened": self.opened,
            "connections_busiest": self.busiest,
            "waited_for_connection": self.waited,
            "connect_errors": self.connect_errors,
            "connections_reopened": self.reopened,
            "connections_dropped_idle": self.dropped,
            "driver_cpu": round(self.cpu, 2),
        }


async def offer(
    host: str,
    port: int,
    segments: list[Segment],
    *,
    cap: int,
    take: Callable[[], bytes],
    on_mark: Callable[[str], None] = lambda mark: None,
) -> tuple[list[Answer], Pool, float]:
    """Offer `segments` one after another; every answer, the pool, and the start time."""
    offering = _Offer(host, port, segments, cap=cap, take=take, on_mark=on_mark)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        await offering.run(start)
    finally:
        offering.close()
    pool = offering.pool
    pool.cpu = (time.process_time() - cpu) / (time.perf_counter() - start)
    return offering.answers, pool, start


class _Offer:
    """The schedule and the connections as event loop callbacks: no task per request, one
    per connection opened (its connect)."""

    def __init__(
        self,
        host: str,
        port: int,
        segments: list[Segment],
        *,
        cap: int,
        take: Callable[[], bytes],
        on_mark: Callable[[str], None],
    ) -> None:
        self.host, self.port, self.take, self.on_mark = host, port, take, on_mark
        self.segments = deque(segments)
        self.pool = Pool(cap)
        self.answers: list[Answer] = []
        self.live: set[_Connection] = set()
        self.connecting: set[asyncio.Task[None]] = set()
        self.pending = 0  # requests dispatched and not yet answered
        self.scheduling = True
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.next_due = float("inf")  # when the request after the last dispatched is due
        self.begins = 0.0
        self.sent = 0  # of the current segment
        self.marked = False
        self.closed = False

    async def run(self, start: float) -> None:
        self.begins = start
        self.tick()
        await self.done

    def close(self) -> None:
        """Every connection closed (what is in flight is not answered)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        for task in self.connecting:
            task.cancel()
        for conn in list(self.live):
            conn.transport.close()

    def tick(self) -> None:
        """Dispatch every request due by now; sleep until the next one is (at least a tick)."""
        self.timer = None
        now = time.perf_counter()
        while self.segments:
            segment = self.segments[0]
            if now < self.begins:  # the next segment's mark goes out on its time
                self.next_due = self.begins
                self.timer = self.loop.call_later(self.begins - now, self.tick)
                return
            if not self.marked:
                self.marked = True
                if segment.mark:
                    self.on_mark(segment.mark)
            total = int(segment.rate * segment.seconds)
            due = min(total, int((now - self.begins) * segment.rate) + 1)
            for i in range(self.sent, due):
                scheduled = self.begins + i / segment.rate
                self.dispatch(Answer(scheduled, 0.0, b"", False, lag=now - scheduled))
            self.sent = max(self.sent, due)
            if self.sent < total:
                self.next_due = self.begins + self.sent / segment.rate
                wake = max(TICK, self.next_due - time.perf_counter())
                self.timer = self.loop.call_later(wake, self.tick)
                return
            self.segments.popleft()
            self.begins += segment.seconds
            self.sent, self.marked = 0, False
        self.scheduling = False
        self.finish_if_done()

    def dispatch(self, request: Answer) -> None:
        pool = self.pool
        self.pending += 1
        if pool.idle:
            pool.idle.pop().send(request, retry=True)
        elif pool.open < pool.cap:
            pool.open += 1
            self.connect(request)
        else:
            pool.waited += 1
            pool.backlog.append(request)
            return
        pool.busiest = max(pool.busiest, pool.open - len(pool.idle))

    def connect(self, request: Answer) -> None:
        """A new connection (its slot taken) on which `request` goes out once it is up."""
        task = self.loop.create_task(self._connect(request))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, request: Answer) -> None:
        try:
            await self.loop.create_connection(
                lambda: _Connection(self, request), self.host, self.port
            )
        except OSError:
            self.pool.connect_errors += 1
            self.failed(request)
            self.release()

    def answered(self, conn: _Connection, answer: Answer) -> None:
        """`conn`'s answer is in: it takes the next waiting request, or goes idle."""
        self.answer(answer)
        if not conn.keep_alive:
            conn.transport.close()  # the server said so: lost() frees its slot
        elif self.pool.backlog:
            conn.send(self.pool.backlog.popleft(), retry=True)
        else:
            self.pool.idle.append(conn)
        if self.timer is not None and answer.scheduled + answer.latency >= self.next_due:
            self.timer.cancel()  # a request is due: out now rather than at the tick's end
            self.tick()

    def lost(self, conn: _Connection, request: Answer | None, retry: bool) -> None:
        """The server closed `conn`: its request, if any, is sent again on a new connection
        (once, if `conn` was reused: as an HTTP client does for a stale keep-alive
        connection) or fails; its slot goes to a waiting request or is freed."""
        pool = self.pool
        self.live.discard(conn)
        if self.closed:
            return
        if request is None:
            if conn in pool.idle:
                pool.idle.remove(conn)
                pool.dropped += 1
            self.release()
        elif retry:
            pool.reopened += 1
            self.connect(request)
        else:
            self.failed(request)
            self.release()

    def release(self) -> None:
        """A connection's slot is free: a waiting request opens a new one in it."""
        if self.pool.backlog:
            self.connect(self.pool.backlog.popleft())
        else:
            self.pool.open -= 1

    def failed(self, request: Answer) -> None:
        request.latency = time.perf_counter() - request.scheduled
        self.answer(request)

    def answer(self, answer: Answer) -> None:
        self.answers.append(answer)
        self.pending -= 1
        self.finish_if_done()

    def finish_if_done(self) -> None:
        if not self.scheduling and not self.pending and not self.done.done():
            self.done.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight; its answers parsed by
    httptools."""

    transport: asyncio.Transport

    def __init__(self, offering: _Offer, request: Answer) -> None:
        self.offering = offering
        self.parser = httptools.HttpResponseParser(self)
        self.request: Answer | None = request  # the one in flight, if one is
        self.retry = False
        self.body = b""
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.offering.pool.opened += 1
        self.offering.live.add(self)
        assert self.request is not None
        self.send(self.request, retry=False)

    def send(self, request: Answer, *, retry: bool) -> None:
        self.request, self.retry, self.body = request, retry, b""
        request.unsent = time.perf_counter() - request.scheduled
        self.transport.write(self.offering.take())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        answer, self.request = self.request, None
        if answer is None:  # an answer to no request
            self.transport.close()
            return
        answer.latency = time.perf_counter() - answer.scheduled
        answer.status = b"%d" % self.parser.get_status_code()
        answer.allowed = b'"allow"' in self.body
        self.keep_alive = self.parser.should_keep_alive()
        self.offering.answered(self, answer)

    def connection_lost(self, exc: Exception | None) -> None:
        request, self.request = self.request, None
        self.offering.lost(self, request, self.retry)


def window(answers: list[Answer], begins: float, ends: float, *, deadline: float) -> dict[str, Any]:
    """The requests scheduled in [begins, ends): offered and answered (within the window)
    req/s, answers by status, latency percentiles and the share answered within `deadline`."""
    mine = [a for a in answers if begins <= a.scheduled < ends]
    seconds = ends - begins
    ok = sorted(a.latency for a in mine if a.status == b"200")
    unsent = sorted(a.unsent for a in mine if a.status == b"200")
    lag = sorted(a.lag for a in mine if a.status == b"200")
    served = [a.latency - a.unsent for a in mine if a.status == b"200"]
    arrived = sum(begins <= a.scheduled + a.latency < ends for a in answers if a.status == b"200")

    def pct(q: float) -> float | None:
        return round(1000 * ok[min(len(ok) - 1, int(q * len(ok)))], 2) if ok else None

    return {
        "requests": len(ok),
        "errors": len(mine) - len(ok),
        "allowed": sum(a.allowed for a in mine if a.status == b"200"),
        "offered_rps": round(len(mine) / seconds, 1),
        "rps": round(arrived / seconds, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": round(1000 * ok[-1], 2) if ok else None,
        "within_deadline": round(sum(s <= deadline for s in ok) / len(ok), 4) if ok else None,
        # The generator's own part: how late requests were written (its lag, or no free
        # connection), and the share within `deadline` from the write (the server's part).
        "unsent_p50_ms": round(1000 * unsent[len(unsent) // 2], 2) if ok else None,
        "unsent_p99_ms": round(1000 * unsent[int(0.99 * (len(unsent) - 1))], 2) if ok else None,
        # Of which the scheduler's own (dispatched late), before any wait for a connection.
        "lag_p50_ms": round(1000 * lag[len(lag) // 2], 2) if ok else None,
        "lag_p99_ms": round(1000 * lag[int(0.99 * (len(lag) - 1))], 2) if ok else None,
        "within_deadline_from_write": (
            round(sum(s <= deadline for s in served) / len(served), 4) if ok else None
        ),
    }


def recovered_after(answers: list[Answer], drop: float, *, deadline: float) -> float:
    """Seconds from the drop to the last request scheduled after it that was answered late
    (past `deadline`) or not at all: 0.0 if none was."""
    late = [
        a.scheduled - drop
        for a in answers
        if a.scheduled >= drop and (a.status != b"200" or a.latency > deadline)
    ]
    return round(max(late, default=0.0), 3)
