"""VerifyGuard served by `python -m app serve` in a process of its own, on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support import TEST_APP_KEY, TEST_APP_SECRET

CALLBACK_PATH = "/sinch/verification/events"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(database_url: str, **env: str) -> Iterator[str]:
    """The server's base URL, once it is ready; it is stopped when the block ends."""
    port = free_port()
    values = os.environ | {
        "VERIFYGUARD_DATABASE_URL": database_url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
        "VERIFYGUARD_ENVIRONMENT": "test",
        "VERIFYGUARD_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    process = subprocess.Popen(
        command, env=values | env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")
