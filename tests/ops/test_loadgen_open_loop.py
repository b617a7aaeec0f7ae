"""The bench's open loop (`bench.loadgen --rate`) keeps its connections from the warm-up into
the measured window: opening them all again as the window starts made its first requests
wait for the connections, and those waits were counted as the server's latency."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

from bench.loadgen import run
from bench.run import CALLBACK_PATH, KEY, SECRET
from tests.support_http import ALLOW_ANSWER, read_request


@contextlib.asynccontextmanager
async def _responder(opened: list[int]) -> AsyncIterator[int]:
    """A keep-alive HTTP/1.1 server on loopback that allows every request; `opened` gets a
    1 per connection accepted. Its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_request(reader)
                writer.write(ALLOW_ANSWER)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def _args(port: int) -> argparse.Namespace:
    return argparse.Namespace(
        host="127.0.0.1",
        port=port,
        path=CALLBACK_PATH,
        key=KEY,
        secret=SECRET,
        duration=0.5,
        warmup=0.3,
        connections=4,
        rate=100.0,
        max_rps=100.0,
        seed=1,
        connection_cap=0,
    )


async def test_the_measured_window_reuses_the_warm_ups_connections() -> None:
    opened: list[int] = []
    async with _responder(opened) as port:
        summary = await run(_args(port))

    assert len(opened) == 4  # one set of connections, not one for the warm-up and another
    # The measured window holds the requests scheduled in it, not the warm-up's.
    assert 45 <= summary["requests"] <= 51
    assert summary["allowed"] == summary["requests"]
    assert summary["errors"] == 0
