"""Keep-alive connections to the callback through aiohttp, cheap enough for one core to offer
hundreds of signed events a second: 0.44-0.51 ms of CPU per attempt at `--rate 300`, receipts
and results included (httpx took 14-21 ms even with sniffio installed and its pool sized;
figures and commands in docs/simulator.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.simulator.callback import Answer, CallbackTarget

# How often one event is sent again when its connection closed under it without an answer.
RESENDS = 2


@dataclass(frozen=True, slots=True)
class Reply:
    """A callback's answer: status and body."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class Connections:
    """At most `size` keep-alive connections to the target, a new one opened when none is
    free; a post waits for a free one (that wait is the server's doing, and is counted in
    `waited`/`waited_s`)."""

    def __init__(
        self,
        target: CallbackTarget,
        *,
        size: int,
        timeout: float = 10.0,
        traces: Sequence[aiohttp.TraceConfig] = (),
    ) -> None:
        """`traces` follow the connections (tests count the ones opened); tracing costs
        ~0.05 ms of CPU per event, so a run has none."""
        self._target = target
        self._slots = asyncio.Semaphore(size)
        self._size = size
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._traces = list(traces)
        self._session: aiohttp.ClientSession | None = None
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
            return await self._post(event)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, event: dict[str, Any]) -> Reply | None:
        for resend in range(RESENDS + 1):
            body, headers = self._target.signed(event)
            try:
                async with self._client().post(self._target.url, data=body, headers=headers) as r:
                    return Reply(r.status, await r.read())
            except aiohttp.ClientConnectorError:
                return None  # no connection could be opened
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # A keep-alive connection the server closed as it was lent (aiohttp resends
                # only idempotent methods itself): sent again on another. A request event
                # that was decided after all is a duplicate, answered from the inbox.
                if resend == RESENDS:
                    return None
            except (aiohttp.ClientError, TimeoutError):
                return None
        return None  # pragma: no cover - the loop returns

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use: inside the event loop that runs the posts."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._size, limit_per_host=0),
                timeout=self._timeout,
                trace_configs=self._traces,
            )
        return self._session
