"""Load offered the way Sinch offers it: each callback is an HTTP request of its own, sent at
its scheduled time on a free keep-alive connection or, when none is free, on a new one.

A fixed pool of connections that each wait for their answer (loadgen's open loop) cannot
offer more than the server answers: past capacity the excess queues in the load generator,
the server never sees it, and the latency reads as if the server took seconds to answer.
Sinch has no such queue, so neither does this, up to `cap` connections (a bench's bound on
sockets, far above what a server within its deadline needs: rate x deadline); a request
that finds all `cap` busy waits for the first to free, and is counted (`waited`).

This generator shares the machine (and its own event loop) with what it measures: past
capacity it may itself send late. Each answer keeps how late its request was written
(`unsent`: the generator's lag and the wait for a connection), and the pool the generator's
CPU, so a report tells the server's share of the latency from the generator's.

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
from typing import Any

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Exchange = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Any]


@dataclass(frozen=True, slots=True)
class Segment:
    """`seconds` of load at `rate` req/s; `mark` is printed when it begins (None: silent)."""

    rate: float
    seconds: float
    mark: str | None = None


@dataclass(slots=True)
class Answer:
    scheduled: float
    latency: float  # from the scheduled send time to the answer's end
    status: bytes
    allowed: bool
    unsent: float = 0.0  # from the scheduled send time to the request's write


@dataclass(slots=True)
class Pool:
    """The connections: idle ones reused (last freed first), new ones opened up to `cap`."""

    cap: int
    idle: list[Connection] = field(default_factory=list)
    open: int = 0
    opened: int = 0
    busiest: int = 0  # connections in use at once, at most
    waited: int = 0  # requests that found all `cap` connections busy
    connect_errors: int = 0
    reopened: int = 0  # idle connections found closed by the server, replaced
    backlog: deque[float] = field(default_factory=deque)
    cpu: float = 0.0  # the generator's CPU seconds a second while it offered

    def stats(self) -> dict[str, float]:
        return {
            "connection_cap": self.cap,
            "connections_opened": self.opened,
            "connections_busiest": self.busiest,
            "waited_for_connection": self.waited,
            "connect_errors": self.connect_errors,
            "connections_reopened": self.reopened,
            "driver_cpu": round(self.cpu, 2),
        }


async def offer(
    host: str,
    port: int,
    segments: list[Segment],
    *,
    cap: int,
    take: Callable[[], bytes],
    exchange: Exchange,
    on_mark: Callable[[str], None] = lambda mark: None,
) -> tuple[list[Answer], Pool, float]:
    """Offer `segments` one after another; every answer, the pool, and the start time."""
    pool = Pool(cap)
    answers: list[Answer] = []
    tasks: set[asyncio.Task[None]] = set()

    async def send(scheduled: float, conn: Connection | None) -> None:
        retry = conn is not None  # an idle connection the server may have closed meanwhile
        while True:
            if conn is None:
                try:
                    conn = await asyncio.open_connection(host, port)
                except OSError:
                    pool.connect_errors += 1
                    pool.open -= 1
                    answers.append(Answer(scheduled, time.perf_counter() - scheduled, b"", False))
                    return
                pool.opened += 1
            reader, writer = conn
            unsent = time.perf_counter() - scheduled
            try:
                reply = await exchange(reader, writer, take())
            except (OSError, asyncio.IncompleteReadError):
                writer.close()
                conn = None  # the server closed it: open another
                if retry:  # as an HTTP client does for a stale keep-alive connection
                    retry = False
                    pool.reopened += 1
                    continue
                answers.append(Answer(scheduled, time.perf_counter() - scheduled, b"", False))
            else:
                latency = time.perf_counter() - scheduled
                answers.append(Answer(scheduled, latency, reply[:3], b'"allow"' in reply, unsent))
            if not pool.backlog:
                break
            scheduled, retry = pool.backlog.popleft(), conn is not None
        if conn is None:
            pool.open -= 1
        else:
            pool.idle.append(conn)

    def dispatch(scheduled: float) -> None:
        if pool.idle:
            conn: Connection | None = pool.idle.pop()
        elif pool.open < pool.cap:
            pool.open += 1
            conn = None
        else:
            pool.waited += 1
            pool.backlog.append(scheduled)
            return
        pool.busiest = max(pool.busiest, pool.open - len(pool.idle))
        task = asyncio.create_task(send(scheduled, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    start, cpu = time.perf_counter(), time.process_time()
    begins = start
    for segment in segments:
        if segment.mark:
            on_mark(segment.mark)
        await _schedule(segment, begins, dispatch)
        begins += segment.seconds
    while tasks:
        await asyncio.gather(*list(tasks))
    for _, writer in pool.idle:
        writer.close()
    pool.cpu = (time.process_time() - cpu) / (time.perf_counter() - start)
    return answers, pool, start


async def _schedule(segment: Segment, begins: float, dispatch: Callable[[float], None]) -> None:
    """Dispatch each request of `segment` at its time (those already due at once)."""
    total = int(segment.rate * segment.seconds)
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - begins) * segment.rate) + 1)
        for i in range(sent, due):
            dispatch(begins + i / segment.rate)
        sent = due
        await asyncio.sleep(max(0.0, begins + sent / segment.rate - time.perf_counter()))


def window(answers: list[Answer], begins: float, ends: float, *, deadline: float) -> dict[str, Any]:
    """The requests scheduled in [begins, ends): offered and answered (within the window)
    req/s, answers by status, latency percentiles and the share answered within `deadline`."""
    mine = [a for a in answers if begins <= a.scheduled < ends]
    seconds = ends - begins
    ok = sorted(a.latency for a in mine if a.status == b"200")
    unsent = sorted(a.unsent for a in mine if a.status == b"200")
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
