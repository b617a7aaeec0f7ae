"""Concurrent signed request events (and a result for some), each answer timed by the client."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from app.sinch import samples
from tests.support import SinchSender


@dataclass
class Sent:
    ident: str
    kind: str
    status: int
    seconds: float
    answer: dict[str, Any] | None
    phase: str


@dataclass
class Load:
    sinch: SinchSender
    phase: str = "normal"
    sent: list[Sent] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, concurrency: int, *, results_every: int = 3) -> None:
        await asyncio.gather(*(self._worker(w, results_every) for w in range(concurrency)))

    async def _worker(self, worker: int, results_every: int) -> None:
        n = 0
        while not self.stop.is_set():
            number = f"+4670{random.randrange(10**6, 10**7)}"
            event = samples.request_event(number=number)
            await self._post("request", event)
            n += 1
            if n % results_every == 0:
                result = samples.result_event(verification_id=event["id"], number=number)
                await self._post("result", result)

    async def _post(self, kind: str, event: dict[str, Any]) -> None:
        phase = self.phase
        started = time.perf_counter()
        response = await self.sinch.post(event)
        seconds = time.perf_counter() - started
        body = response.json() if response.content else None
        self.sent.append(Sent(event["id"], kind, response.status_code, seconds, body, phase))

    def requests(self) -> list[Sent]:
        return [s for s in self.sent if s.kind == "request"]

    def worst(self, *phases: str) -> float:
        return max(
            (s.seconds for s in self.sent if s.kind == "request" and s.phase in phases), default=0.0
        )
