"""Pure-ASGI middleware: a request id per request, bound to logs and echoed in a header."""

from __future__ import annotations

import itertools
import secrets

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PREFIX = secrets.token_hex(4)
_SEQUENCE = itertools.count(1)


def new_request_id() -> str:
    """Unique per process start and request; cheaper than a uuid4 on the hot path."""
    return f"{_PREFIX}-{next(_SEQUENCE):x}"


class RequestIdMiddleware:
    header = b"x-request-id"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(self.header, b"").decode("latin-1")[:64]
        request_id = incoming or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((self.header, request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)
