"""The callback's bytes in and out: its headers picked in one pass, its body read straight from
ASGI `receive`, its signature checked, and its answer rendered as the two ASGI messages.

No Request, Headers, stream generator, Response object or middleware wrapper on the way: they
were 61k of the HTTP side's 510k instructions per request event (bench/http_side.py under
callgrind), for what these few lines do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NoReturn

import structlog
from pydantic_core import to_json
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from app.api.deps import Runtime
from app.errors import PayloadTooLarge, Unauthorized
from app.services.intake.dispatch import Delivery, Reply
from app.sinch.signature import SignatureError

MAX_CALLBACK_BYTES = 256 * 1024  # Sinch's events are a few hundred bytes
log = structlog.get_logger()
# The bytes starlette's JSONResponse renders (json.dumps(ensure_ascii=False, allow_nan=False,
# separators=(",", ":")), UTF-8), by pydantic-core's encoder: the same bytes for an answer's
# strings, integers, booleans, lists and objects (escapes included), 0.3 µs instead of 2.3.
_JSON_TYPE = (b"content-type", b"application/json")
# The headers the callback reads; as starlette's Headers, the first of each counts.
_WANTED = {
    b"authorization": "authorization",
    b"x-timestamp": "x-timestamp",
    b"content-type": "content-type",
    b"content-length": "content-length",
}


@dataclass(slots=True)
class CallbackHeaders:
    """The headers the callback uses, latin-1 decoded (a name absent is absent here)."""

    signed: dict[str, str] = field(default_factory=dict)
    request_id: str = ""  # x-request-id, the last one sent (as the API's middleware takes it)


def pick_headers(raw: list[tuple[bytes, bytes]]) -> CallbackHeaders:
    picked = CallbackHeaders()
    signed = picked.signed
    for name, value in raw:
        wanted = _WANTED.get(name)
        if wanted is not None:
            if wanted not in signed:
                signed[wanted] = value.decode("latin-1")
        elif name == b"x-request-id":
            picked.request_id = value.decode("latin-1")[:64]
    return picked


async def read_body(receive: Receive, headers: Mapping[str, str]) -> bytes:
    """The body, refused (413) beyond the limit: by its Content-Length, or as it streams.
    A disconnect before its end raises ClientDisconnect, as starlette's Request.stream does."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CALLBACK_BYTES:
        _too_large(int(declared))
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                if received > MAX_CALLBACK_BYTES:
                    _too_large(received)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


def _too_large(size: int) -> NoReturn:
    limit = MAX_CALLBACK_BYTES
    log.warning("callback.too_large", bytes=size, limit=limit)
    raise PayloadTooLarge(f"A callback body is at most {limit} bytes; this one has {size}+.")


async def signed_delivery(runtime: Runtime, body: bytes, headers: Mapping[str, str]) -> Delivery:
    """The raw callback body, its signature checked against the configured Sinch apps."""
    now = datetime.now(UTC)
    content_type = headers.get("content-type")
    try:
        app_key = runtime.verifier.verify_parts(
            method="POST", path=runtime.settings.signed_path, body=body, headers=headers, now=now
        )
    except SignatureError as exc:
        rejected = Delivery(body, content_type, exc.app_key, now, signature=exc.failure.value)
        await runtime.intake.reject(rejected)
        raise Unauthorized(
            _REJECTION_DETAIL[exc.failure.value],
            code=exc.failure.value,
            headers={"WWW-Authenticate": "Application"},
        ) from None
    return Delivery(body, content_type, app_key, now)


def answer_messages(reply: Reply, request_id: str) -> tuple[Message, Message]:
    """A reply without an error as ASGI messages: what starlette's JSONResponse (a body) or
    Response (none) would send, with the request id header as the middleware adds it."""
    status = reply.status
    body = reply.encoded
    if body is None:
        body = b"" if reply.body is None else to_json(reply.body)
    headers: list[tuple[bytes, bytes]] = []
    if not (status < 200 or status in (204, 304)):
        headers.append((b"content-length", str(len(body)).encode()))
    if reply.body is not None:
        headers.append(_JSON_TYPE)
    headers.append((b"x-request-id", request_id.encode()))
    start = {"type": "http.response.start", "status": status, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


_REJECTION_DETAIL = {
    "missing_authorization": "The Authorization header is missing.",
    "malformed_authorization": "The Authorization header is not 'Application <key>:<signature>'.",
    "unknown_application": "The application key is not configured.",
    "missing_timestamp": "The x-timestamp header is missing.",
    "malformed_timestamp": "The x-timestamp header is not an ISO-8601 timestamp.",
    "stale_timestamp": "The x-timestamp header is outside the accepted window.",
    "bad_signature": "The signature does not match the request.",
}
