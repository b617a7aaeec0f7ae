"""The bench's over-capacity load (bench/scheduled.py) offers its requests as Sinch does: a
request that finds every connection busy goes out on a new one, never waiting behind an
answer, up to the cap; past the cap it waits and is counted. Driven against a real socket
server that holds its answers until the test lets them go."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bench.scheduled import Answer, Pool, Segment, offer

REQUEST = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
BODY = b'{"action":"allow"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
# req/s: every request of a short segment is due at the first tick, before any connection
# is up. At 1e6 a tick within 2 us of the start found only two of three due, the third
# dispatched after the first two connects had failed (a flaky `waited`). A power of two, so
# that `count / AT_ONCE * AT_ONCE` is exactly `count`.
AT_ONCE = float(2**30)


@dataclass
class Held:
    """A server that answers nothing until `release` is set; `received` counts requests."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    close_after_answer: bool = False
    close_on_request: int = 0  # closes a connection unanswered on its request number this

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for number in itertools.count(1):
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                if number == self.close_on_request:
                    break
                async with self.arrived:
                    self.received += 1
                    self.arrived.notify_all()
                await self.release.wait()
                writer.write(ANSWER)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def until_received(self, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.received >= count)


@asynccontextmanager
async def serving(held: Held) -> AsyncIterator[int]:
    server = await asyncio.start_server(held.handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _at_once(held: Held, port: int, count: int, *, cap: int) -> tuple[list[Answer], Pool]:
    """`count` requests offered at once with at most `cap` connections."""
    answers, pool, _ = await offer(
        "127.0.0.1", port, [Segment(AT_ONCE, count / AT_ONCE)], cap=cap, take=lambda: REQUEST
    )
    return answers, pool


async def _five_at_once(*, cap: int, answered_after: int) -> tuple[list[Answer], Pool]:
    """Five requests offered at once with at most `cap` connections, to a server that
    answers none before `answered_after` of them arrived: the answers and the pool."""
    held = Held()
    async with serving(held) as port, asyncio.timeout(60):  # a hang guard, not a measure
        releaser = asyncio.create_task(_release_after(held, answered_after))
        answers, pool = await _at_once(held, port, 5, cap=cap)
        await releaser
    assert all(a.lag <= a.unsent <= a.latency for a in answers)
    return answers, pool


async def test_a_request_finding_every_connection_busy_goes_out_on_a_new_one() -> None:
    # Nothing is answered before all five arrived: only five connections get them there.
    answers, pool = await _five_at_once(cap=64, answered_after=5)
    assert [a.status for a in answers] == [b"200"] * 5
    assert all(a.allowed for a in answers)
    assert (pool.opened, pool.waited) == (5, 0)


async def test_past_the_cap_a_request_waits_for_a_connection_and_is_counted() -> None:
    answers, pool = await _five_at_once(cap=2, answered_after=2)
    assert [a.status for a in answers] == [b"200"] * 5
    assert (pool.opened, pool.waited, pool.busiest) == (2, 3, 2)


async def test_a_connection_the_server_closed_is_replaced_not_an_error() -> None:
    held = Held(close_after_answer=True)
    held.release.set()
    async with serving(held) as port, asyncio.timeout(60):
        # Two segments a second apart: the second request finds the first's connection idle
        # (closed by the server meanwhile), or, on a slow machine, opens one of its own.
        answers, pool, _ = await offer(
            "127.0.0.1", port, [Segment(1.0, 1.0), Segment(1.0, 1.0)], cap=8,
            take=lambda: REQUEST,
        )  # fmt: skip
    assert [a.status for a in answers] == [b"200", b"200"]
    assert pool.connect_errors == 0
    assert pool.opened == 2


async def test_a_request_on_a_reused_connection_the_server_closes_is_sent_again_once() -> None:
    # One connection allowed: the second request waits, then goes out on the first's
    # connection, which the server closes under it (a stale keep-alive connection).
    held = Held(close_on_request=2)
    held.release.set()
    async with serving(held) as port, asyncio.timeout(60):
        answers, pool = await _at_once(held, port, 2, cap=1)
    assert [a.status for a in answers] == [b"200", b"200"]
    assert (pool.waited, pool.reopened, pool.opened, pool.connect_errors) == (1, 1, 2, 0)


async def test_a_request_a_new_connection_drops_fails_and_the_next_waiting_gets_the_slot() -> None:
    # Every connection closed on its first request: no retry on a new connection (only a
    # reused one may be stale), and the waiting request goes out on a new one of its own.
    held = Held(close_on_request=1)
    async with serving(held) as port, asyncio.timeout(60):
        answers, pool = await _at_once(held, port, 2, cap=1)
    assert [a.status for a in answers] == [b"", b""]
    assert (pool.waited, pool.reopened, pool.opened, pool.open) == (1, 0, 2, 0)


async def test_every_request_offered_is_answered_even_when_no_connection_can_be_opened() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with asyncio.timeout(60):
        answers, pool = await _at_once(Held(), port, 3, cap=2)
    assert [a.status for a in answers] == [b"", b"", b""]
    assert (pool.connect_errors, pool.waited, pool.opened, pool.open) == (3, 1, 0, 0)


async def test_each_segment_is_marked_as_it_begins_and_every_request_answered() -> None:
    held = Held()
    held.release.set()
    marks: list[str] = []
    async with serving(held) as port, asyncio.timeout(60):
        segments = [Segment(AT_ONCE, 3 / AT_ONCE), Segment(AT_ONCE, 2 / AT_ONCE, "start")]
        segments.append(Segment(AT_ONCE, 4 / AT_ONCE, "drop"))
        answers, _, start = await offer(
            "127.0.0.1", port, segments, cap=8, take=lambda: REQUEST, on_mark=marks.append
        )
    assert marks == ["start", "drop"]
    assert len(answers) == 9
    assert sorted(a.scheduled for a in answers)[0] == start


async def _release_after(held: Held, count: int) -> None:
    await held.until_received(count)
    held.release.set()
