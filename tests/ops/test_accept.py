"""A burst of new connections is taken in within a few turns of the event loop.

When an attack doubles the load, the sender (Sinch, or a proxy in front) opens hundreds of
connections at once. uvloop accepts one per turn of its loop on a listening socket; on one
socket their requests waited unread in the kernel's accept queue, where neither the deadline
nor admission sees them, for seconds (`make bench`'s overload phase on PostgreSQL; the
figures in docs/operations.md). `verifyguard serve` listens on many sockets that share the
port, each accepted from once per turn (app/cli/listen.py), in one process or in each of
`--workers`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.cli.listen import LISTENERS, listening_sockets
from app.cli.serve import uvicorn_settings
from app.sinch import samples
from app.store.base import create_engine
from tests.ops.outage import stored_requests
from tests.support import SinchSender
from tests.support_server import CALLBACK_PATH, served, server_settings

BURST = 256


def test_the_serving_sockets_take_a_waiting_burst_in_a_few_turns_of_the_loop() -> None:
    config = uvicorn.Config(**uvicorn_settings("127.0.0.1", 0, workers=1, worker_timeout=60))
    factory = config.get_loop_factory()
    loop = factory() if factory else asyncio.new_event_loop()
    accepted: list[asyncio.BaseTransport] = []

    class Counting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)

    sockets = listening_sockets("127.0.0.1", 0)
    assert len(sockets) == LISTENERS
    address = sockets[0].getsockname()
    assert {sock.getsockname() for sock in sockets} == {address}, "not all on one port"
    clients: list[socket.socket] = []
    try:
        servers = [
            loop.run_until_complete(loop.create_server(Counting, sock=s, backlog=config.backlog))
            for s in sockets
        ]
        # The loop is not running: each handshake completes in the kernel and the
        # connection waits in an accept queue, as a burst does behind a busy loop.
        clients = [socket.create_connection(address) for _ in range(BURST)]
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
        for server in servers:
            server.close()
            loop.run_until_complete(server.wait_closed())
    finally:
        for sock in clients + sockets:
            sock.close()
        loop.close()
    # On one socket uvloop takes BURST + 1 turns; on 64 the kernel spreads the 256 over
    # them, the fullest holding about a dozen (10 to 14 turns in six runs).
    assert needed <= BURST / 8, f"{BURST} waiting connections took {needed} turns of the loop"


def test_a_port_already_listened_on_is_refused_not_shared() -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", port)
    ours = listening_sockets("127.0.0.1", 0)
    try:
        for sock in ours:
            sock.listen()
        # A second server started the same way would share the port with SO_REUSEPORT.
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", ours[0].getsockname()[1])
    finally:
        for sock in ours:
            sock.close()


def test_serve_on_a_port_in_use_exits_with_a_clear_error(
    sqlite_template: Path, tmp_path: Path
) -> None:
    database = tmp_path / "verifyguard.db"
    shutil.copy(sqlite_template, database)
    env = os.environ | server_settings(f"sqlite+aiosqlite:///{database}", tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr


async def test_serve_with_workers_answers_on_the_shared_sockets(
    sqlite_template: Path, tmp_path: Path
) -> None:
    database = tmp_path / "verifyguard.db"
    shutil.copy(sqlite_template, database)
    url = f"sqlite+aiosqlite:///{database}"
    with served(url, tmp_path / "served", "--workers", "2") as base:
        answers = []
        for n in range(16):  # each on a connection of its own: any worker, any socket
            event = samples.request_event(number=f"+4670{1234500 + n}")
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                reply = await SinchSender(client, path=CALLBACK_PATH).post(event)
            answers.append((event["id"], reply))
    assert [r.status_code for _, r in answers] == [200] * 16
    assert all(r.json()["action"] == "allow" for _, r in answers)
    engine = create_engine(url)
    try:
        stored = await stored_requests(engine, [ident for ident, _ in answers])
    finally:
        await engine.dispose()
    assert len(stored) == 16, "a request event was not stored"
