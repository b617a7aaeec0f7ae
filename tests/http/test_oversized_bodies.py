"""Oversized bodies are answered 413 with the problem document, never a reset: a client that
writes its whole body before reading (as urllib does) must read the answer. A real server,
raw sockets, declared and chunked bodies, signed and unsigned, 1-20 MB, many times over."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.api.bodies import ADMIN_BODY_BYTES
from app.api.callback_io import MAX_CALLBACK_BYTES
from app.sinch.signature import callback_headers
from tests.http.live import BOOTSTRAP, serve
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

CALLBACK = "/sinch/verification/events"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def base(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("oversized")
    shutil.copy(sqlite_template, tmp / "vg.db")
    with serve(f"sqlite+aiosqlite:///{tmp / 'vg.db'}", tmp) as url:
        yield url


def _exchange(base: str, head: list[str], body: bytes, *, chunked: bool) -> tuple[int, dict]:
    """Write the request to the end, then read the answer (status, problem document)."""
    host, port = base.removeprefix("http://").split(":")
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    request = "\r\n".join([*head, framing, "Connection: close", "", ""]).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        if chunked:
            for start in range(0, len(body), 64 * 1024):
                piece = body[start : start + 64 * 1024]
                sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    headers, _, payload = answer.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in headers.lower()
    return status, json.loads(payload)


def _callback_head(body: bytes, *, signed: bool) -> list[str]:
    head = [f"POST {CALLBACK} HTTP/1.1", "Host: verifyguard.test", "Content-Type: application/json"]
    if signed:
        headers = callback_headers(
            key=TEST_APP_KEY,
            secret_b64=TEST_APP_SECRET,
            body=body,
            path=CALLBACK,
            now=datetime.now(UTC),
        )
        head += [
            f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-type"
        ]
    return head


def _oversized_event(size: int) -> bytes:
    event = {"id": "x", "event": "VerificationRequestEvent", "reference": "a" * size}
    return json.dumps(event).encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_an_oversized_callback_gets_its_413(base: str, signed: bool, chunked: bool) -> None:
    for size_mb in (1, 2, 5, 12, 20, 1, 3, 8):
        body = _oversized_event(size_mb * MB)
        assert len(body) > MAX_CALLBACK_BYTES
        status, problem = _exchange(
            base, _callback_head(body, signed=signed), body, chunked=chunked
        )
        assert (status, problem["code"]) == (413, "payload_too_large")


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_csv_import_over_its_limit_gets_its_413(base: str, chunked: bool) -> None:
    head = [
        "POST /admin/lists/blocked/import HTTP/1.1",
        "Host: verifyguard.test",
        "Content-Type: text/csv",
        f"Authorization: Bearer {BOOTSTRAP}",
    ]
    for size_mb in (9, 14, 20):
        line = b"+46700000000,pumping range,\n"
        body = line * (size_mb * MB // len(line))
        assert len(body) > ADMIN_BODY_BYTES
        status, problem = _exchange(base, head, body, chunked=chunked)
        assert (status, problem["code"]) == (413, "payload_too_large")


def test_the_server_still_answers_after_the_refusals(base: str) -> None:
    body = b"value\n+46700000000\n"
    head = [
        "POST /admin/lists/nowhere/import HTTP/1.1",
        "Host: verifyguard.test",
        "Content-Type: text/csv",
        f"Authorization: Bearer {BOOTSTRAP}",
    ]
    status, problem = _exchange(base, head, body, chunked=False)
    assert (status, problem["code"]) == (404, "list_not_found")
