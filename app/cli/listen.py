"""The listening sockets `verifyguard serve` hands to uvicorn, and uvicorn run on them.

uvloop's libuv accepts one new connection per turn of the event loop (libuv #3696). When an
attack doubles the load, Sinch (or the proxy in front) opens hundreds of connections at
once; accepted one per turn of a busy loop, their requests waited unread in the kernel's
accept queue for seconds, out of sight of the decision deadline and of admission. Several
sockets listening on the port together (SO_REUSEPORT: the kernel spreads new connections
over them) are each accepted from once per turn, so a burst is taken in within a few turns
and admission sheds what cannot be decided in time. The standard library's asyncio loop
drains the queue too, but costs ~17 % more instructions per request event than uvloop
(docs/operations.md has both measured).
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

LISTENERS = 64  # accepts per turn of the loop; at twice capacity 8 left a slower tail


class StartupFailed(RuntimeError):
    """uvicorn stopped before it served (the app's lifespan failed, or it could not listen)."""


def listening_sockets(host: str, port: int, count: int = LISTENERS) -> list[socket.socket]:
    """`count` sockets bound to host:port together (one where the platform has no
    SO_REUSEPORT), not yet listening: uvicorn listens on them. Raises OSError if anything
    listens there already: a plain bind is tried first, because sockets that share a port
    would otherwise share it silently with another server started the same way."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]  # port 0: the free one it got, for all of them
    shared = hasattr(socket, "SO_REUSEPORT") and count > 1
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if shared else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)  # the workers' processes listen on them too
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def run(config: uvicorn.Config, sockets: list[socket.socket]) -> None:
    """What uvicorn.run does with a configuration, on `sockets` (one process, or
    `config.workers` of them under uvicorn's supervisor, each listening on all)."""
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            config.load_app()
            server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    finally:
        for sock in sockets:
            sock.close()
    if config.workers == 1 and not server.started:
        raise StartupFailed
