"""VerifyGuard served by `python -m app serve` (uvicorn) in a process of its own, on
loopback, for the tests that need a real socket or several processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import TEST_APP_KEY, TEST_APP_SECRET

CALLBACK_PATH = "/sinch/verification/events"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(database_url: str, workdir: Path, *options: str, **env: str) -> Iterator[str]:
    """The server's base URL once it is ready, until the block ends. It runs in `workdir`
    (its spool and `server.log` there); `options` go to `serve`, `env` adds or overrides
    settings."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = server_settings(database_url, workdir) | env
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += options
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=os.environ | settings, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, log_path)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=60)  # a loaded CI machine: shutdown took over 15 s once


def server_settings(database_url: str, workdir: Path) -> dict[str, str]:
    """The environment a test's `verifyguard serve` runs with (its spool in `workdir`)."""
    return {
        "VERIFYGUARD_DATABASE_URL": database_url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
        "VERIFYGUARD_ENVIRONMENT": "test",
        "VERIFYGUARD_LOG_LEVEL": "WARNING",
        "VERIFYGUARD_SPOOL_DIR": str(workdir / "spool"),
    }


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server did not become ready: {log.read_text()}")
