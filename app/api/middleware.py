"""Pure-ASGI middleware: a request id per request, bound to logs and echoed in a header."""

from __future__ import annotations

import itertools
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import bind_request_id


class RequestIds:
    """One app's request ids: a random prefix per app start, then a sequence number."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._sequence = itertools.count(1)

    def next(self) -> str:
        """Unique per app start and request; cheaper than a uuid4 on the hot path."""
        return f"{self._prefix}-{next(self._sequence):x}"


class RequestIdMiddleware:
    header = b"x-request-id"

    def __init__(self, app: ASGIApp, *, ids: RequestIds) -> None:
        self.app = app
        self._ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(self.header, b"").decode("latin-1")[:64]
        request_id = incoming or self._ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        bind_request_id(request_id)
        await self.app(scope, receive, with_request_id(send, request_id))


def with_request_id(send: Send, request_id: str) -> Send:
    """`send`, with the request id header added to the response's start."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
        await send(message)

    return send_with_id
