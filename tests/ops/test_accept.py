"""A burst of new connections is taken in at once, not one per turn of the event loop.

When an attack doubles the load, the sender (Sinch, or a proxy in front) opens hundreds of
connections at once. A server that accepts one per turn of its loop (uvloop's libuv does)
leaves their requests unread in the kernel's accept queue, where neither the deadline nor
admission sees them, for seconds (`make bench`'s overload phase on PostgreSQL: 59 to 74 % of
the answers within the deadline on uvloop, 97 to 100 % on asyncio's loop; docs/operations.md).
This test holds the loop `verifyguard serve` runs on to taking a waiting burst in a few turns.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from app.cli.serve import uvicorn_settings

BURST = 256


def test_the_serving_loop_takes_a_waiting_burst_of_connections_in_a_few_turns() -> None:
    config = uvicorn.Config(**uvicorn_settings("127.0.0.1", 0, workers=1, worker_timeout=60))
    factory = config.get_loop_factory()
    loop = factory() if factory else asyncio.new_event_loop()
    accepted: list[asyncio.BaseTransport] = []

    class Counting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)

    listener = socket.create_server(("127.0.0.1", 0), backlog=config.backlog)
    clients: list[socket.socket] = []
    try:
        server = loop.run_until_complete(
            loop.create_server(Counting, sock=listener, backlog=config.backlog)
        )
        # The loop is not running: each handshake completes in the kernel and the
        # connection waits in the accept queue, as a burst does behind a busy loop.
        clients = [socket.create_connection(listener.getsockname()) for _ in range(BURST)]
        turns = 0
        all_in: asyncio.Future[int] = loop.create_future()

        def turn() -> None:  # runs once per turn of the loop, until all are in
            nonlocal turns
            turns += 1
            if len(accepted) == BURST:
                all_in.set_result(turns)
            else:
                loop.call_soon(turn)

        loop.call_soon(turn)
        needed = loop.run_until_complete(all_in)
        for transport in accepted:
            transport.close()
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        for client in clients:
            client.close()
        loop.close()
    # uvloop takes one per turn: BURST + 1 turns.
    assert needed <= 8, f"{BURST} waiting connections took {needed} turns of the loop"
