"""The bench's over-capacity load (bench/scheduled.py) offers its requests as Sinch does: a
request that finds every connection busy goes out on a new one, never waiting behind an
answer, up to the cap; past the cap it waits and is counted. Driven against a real socket
server that holds its answers until the test lets them go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bench.scheduled import Answer, Pool, Segment, offer

REQUEST = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
BODY = b'{"action":"allow"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
AT_ONCE = 1e6  # req/s: every request of a short segment is due before any connection is up


@dataclass
class Held:
    """A server that answers nothing until `release` is set; `received` counts requests."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    close_after_answer: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
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


async def _five_at_once(*, cap: int, answered_after: int) -> tuple[list[Answer], Pool]:
    """Five requests offered at once with at most `cap` connections, to a server that
    answers none before `answered_after` of them arrived: the answers and the pool."""
    held = Held()
    async with serving(held) as port, asyncio.timeout(60):  # a hang guard, not a measure
        releaser = asyncio.create_task(_release_after(held, answered_after))
        answers, pool, _ = await offer(
            "127.0.0.1", port, [Segment(AT_ONCE, 5 / AT_ONCE)], cap=cap,
            take=lambda: REQUEST,
        )  # fmt: skip
        await releaser
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


async def _release_after(held: Held, count: int) -> None:
    await held.until_received(count)
    held.release.set()
