"""Keep-alive HTTP/1.1 connections to the callback, cheap enough for one core to offer
hundreds of signed events a second. Through httpx the simulator spent ~5 ms of CPU per event
(py-spy: its pool scans every connection on each request, and httpcore retries a failing
`import sniffio` on each one), so it offered 26-85 attempts/s when asked for 300.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.simulator.callback import Answer, CallbackTarget

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Reply:
    """A callback's answer: status and body."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class Connections:
    """At most `size` connections to the target; a post waits for a free one (that wait is
    the server's doing, and is counted in `waited`/`waited_s`)."""

    def __init__(self, target: CallbackTarget, *, size: int, timeout: float = 10.0) -> None:
        parts = urlsplit(target.url)
        self._target = target
        self._host = parts.hostname or "127.0.0.1"
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._authority = parts.netloc
        self._timeout = timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Stream] = []
        self.opened = 0
        self.waited = 0
        self.waited_s = 0.0

    async def __call__(self, event: dict[str, Any]) -> Answer | None:
        """Post `event` signed now; None when the callback could not be reached in time."""
        if self._slots.locked():
            self.waited += 1
            asked = time.monotonic()
            await self._slots.acquire()
            self.waited_s += time.monotonic() - asked
        else:
            await self._slots.acquire()
        try:
            body, headers = self._target.signed(event)
            return await self._post(self._request(body, headers))
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    def _request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [f"POST {self._path} HTTP/1.1", f"host: {self._authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _post(self, request: bytes) -> Reply | None:
        while self._idle:
            stream = self._idle.pop()
            if stream[0].at_eof():  # the server closed it while it was idle
                stream[1].close()
                continue
            try:
                return await self._exchange(stream, request)
            except asyncio.IncompleteReadError as exc:
                # Closed before a byte of the answer: taken as stale and sent again on a
                # fresh connection (a request event that was decided after all is a
                # duplicate, answered from the inbox as stored).
                if exc.partial:
                    return None
            except (OSError, TimeoutError, ValueError):
                return None
        try:
            return await self._exchange(await self._open(), request)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            return None

    async def _open(self) -> Stream:
        context = ssl.create_default_context() if self._tls else None
        async with asyncio.timeout(self._timeout):
            stream = await asyncio.open_connection(self._host, self._port, ssl=context)
        self.opened += 1
        return stream

    async def _exchange(self, stream: Stream, request: bytes) -> Reply:
        reader, writer = stream
        try:
            async with asyncio.timeout(self._timeout):
                writer.write(request)
                reply, keep = await _read_reply(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append(stream)
        else:
            writer.close()
        return reply


async def _read_reply(reader: asyncio.StreamReader) -> tuple[Reply, bool]:
    """The reply, and whether the connection may carry another request."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    fields = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip().lower()
    if fields.get("transfer-encoding") == "chunked":
        body = await _chunked(reader)
    else:
        body = await reader.readexactly(int(fields.get("content-length", "0")))
    return Reply(status, body), fields.get("connection") != "close"


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append((await reader.readexactly(size + 2))[:-2])
    await reader.readuntil(b"\r\n")  # no trailers are sent to a callback's client
    return b"".join(parts)
