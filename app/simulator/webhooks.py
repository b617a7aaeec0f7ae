"""The simulator's webhook receiver: VerifyGuard's alert notifications, each checked against
its Standard Webhooks signature and recorded with the run's clock when it arrived (a bad or
missing signature is answered 401 and only counted).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from app.services.alerts.signing import verify

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Clock = Callable[[], float]
SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass(frozen=True, slots=True)
class Notice:
    """One verified notification: its type, the key it names, and when it arrived (seconds
    into the run)."""

    type: str
    alert: str | None
    key: str
    value: str
    arrived_s: float


@dataclass(slots=True)
class Receiver:
    """An ASGI app recording verified notifications; `clock` says how far into the run it is."""

    secret: str
    clock: Clock
    notices: list[Notice] = field(default_factory=list)
    rejected: int = 0

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status = 204 if self.accept(headers, body) else 401
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def accept(self, headers: dict[str, str], body: bytes) -> bool:
        """Record the notification if its signature is this receiver's secret's."""
        if not all(name in headers for name in SIGNED) or not _signed(self.secret, headers, body):
            self.rejected += 1
            return False
        document = json.loads(body)
        self.notices.append(
            Notice(
                type=str(document["type"]),
                alert=document.get("alert"),
                key=str(document["key"]),
                value=str(document["value"]),
                arrived_s=round(self.clock(), 3),
            )
        )
        return True


def _signed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    try:
        return verify(secret, headers, body)
    except ValueError:  # a timestamp that is not a number, a secret that is not base64
        return False


async def _body(receive: Callable[[], Awaitable[Message]]) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


class Listening:
    """The receiver served by uvicorn on 127.0.0.1:`port` inside this event loop."""

    def __init__(self, receiver: Receiver, *, port: int, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(
            receiver,
            host=host,
            port=port,
            lifespan="off",
            ws="none",
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listening:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # uvicorn offers no event to wait on
            if self._task.done():
                raise OSError(f"the webhook receiver could not listen: {self._task.exception()}")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
