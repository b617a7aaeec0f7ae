"""A callback's log lines carry its request id, bound once per request in a variable of its own:
no walk over every context variable to clear or to merge it (structlog.contextvars did both,
~14k instructions a request event)."""

from __future__ import annotations

import contextvars
import io
import json
import sys
from typing import Any

import pytest
import structlog
from httpx import AsyncClient, Response

from app.sinch import samples
from tests.support import SinchSender


class _CountingContextvars:
    """structlog.contextvars' view of the contextvars module, counting its context copies."""

    ContextVar = contextvars.ContextVar
    Token = contextvars.Token

    def __init__(self) -> None:
        self.copies = 0

    def copy_context(self) -> contextvars.Context:
        self.copies += 1
        return contextvars.copy_context()


async def _rejected_line(
    client: AsyncClient, sinch: SinchSender, **extra: str
) -> tuple[dict[str, Any], Response]:
    """A callback whose signature fails: its `callback.rejected` line (a warning: the tests'
    level), and its response."""
    body = json.dumps(samples.request_event(number="+46701234567")).encode()
    headers = {**sinch.headers(body), "x-timestamp": "not a timestamp", **extra}
    stream, saved = io.StringIO(), sys.stderr
    sys.stderr = stream  # the log lines go to whatever sys.stderr is when written
    try:
        response = await client.post(sinch.path, content=body, headers=headers)
    finally:
        sys.stderr = saved
    assert response.status_code == 401
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (line,) = [line for line in lines if line["event"] == "callback.rejected"]
    return line, response


async def test_a_callbacks_lines_carry_its_request_id_without_walking_the_context(
    sinch: SinchSender, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _CountingContextvars()
    monkeypatch.setattr(structlog.contextvars, "contextvars", counting)
    line, response = await _rejected_line(client, sinch, **{"x-request-id": "trace-17"})
    assert line["request_id"] == "trace-17" == response.headers["x-request-id"]
    line, response = await _rejected_line(client, sinch)
    assert line["request_id"] == response.headers["x-request-id"] != "trace-17"
    assert list(line)[-3:] == ["request_id", "level", "timestamp"]  # where merge_contextvars put it
    assert counting.copies == 0
