"""Request bodies over their limit: refused with a 413 problem document that the client can
read. Closing a connection with the rest of an upload unread makes the kernel reset it, and a
client that writes its whole body before reading (urllib, most SDKs) then sees only the reset;
so what is left is read and thrown away first, up to DRAIN_BYTES and DRAIN_SECONDS.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, Unprocessable, problem_for

DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 30.0
ADMIN_BODY_BYTES = 8 * 1024 * 1024  # a CSV import of ~200 000 entries
log = structlog.get_logger()


async def drain(receive: Receive, *, already: int = 0) -> bool:
    """Read and discard the rest of the body; False when it is longer than the bound allows
    (or does not arrive in time), and the connection should be closed instead."""
    received, deadline = already, time.monotonic() + DRAIN_SECONDS
    while received <= DRAIN_BYTES:
        remaining = deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            return False
        if message["type"] != "http.request":
            return False
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def refuse(scope: Scope, receive: Receive, send: Send, error: PayloadTooLarge) -> None:
    """Answer 413 once the rest of the body has been read (or closing, beyond the bound)."""
    declared = declared_length(scope)
    drained = declared is None or declared <= DRAIN_BYTES
    drained = drained and await drain(receive)
    if not drained:
        error.headers = {**(error.headers or {}), "Connection": "close"}
    request_id = scope.get("state", {}).get("request_id")
    await problem_for(error, request_id)(scope, receive, send)


class BodyLimit:
    """Pure ASGI: bodies above `limit` bytes get a 413 (read to the end first, see above).
    A body within the limit is read here and handed on as one message."""

    def __init__(self, app: ASGIApp, *, limit: int = ADMIN_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            # PostgreSQL cannot compare text with U+0000 in it; no name or id has one.
            where = "path" if "\x00" in scope["path"] else "query"
            error = Unprocessable.listing([{"loc": where, "msg": "contains a NUL character"}])
            await problem_for(error, scope.get("state", {}).get("request_id"))(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.limit:
            await refuse(scope, receive, send, self._error(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await refuse(scope, receive, send, self._error(size))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay(body, receive), send)

    def _error(self, size: int) -> PayloadTooLarge:
        log.warning("request.too_large", bytes=size, limit=self.limit)
        return PayloadTooLarge(
            f"A request body is at most {self.limit} bytes; this one has {size}+."
        )


def _replay(first: Message, receive: Receive) -> Receive:
    """`first`, then the server's own receive (a disconnect, once the client goes)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay
