"""A real VerifyGuard server (`python -m app serve`: uvicorn with httptools) for tests that
need a socket: the schemathesis run and the oversized-body tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.services.tokens import issue_token
from app.store.base import create_engine
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

BOOTSTRAP = "vg_bootstrap_token_for_live_tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auditor_token(database_url: str) -> str:
    """A stored auditor token (the bootstrap token is an admin's)."""

    async def issue() -> str:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                _, token = await issue_token(
                    conn, name="fuzz-auditor", role="auditor", now=datetime.now(UTC)
                )
            return token
        finally:
            await engine.dispose()

    return asyncio.run(issue())


@contextmanager
def serve(database_url: str, tmp_path: Path, **env: str) -> Iterator[str]:
    """The server's base URL, until the block ends; its log is in tmp_path/server.log."""
    port = free_port()
    settings = {
        "VERIFYGUARD_DATABASE_URL": database_url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
        "VERIFYGUARD_BOOTSTRAP_TOKEN": BOOTSTRAP,
        "VERIFYGUARD_ENVIRONMENT": "test",
        "VERIFYGUARD_LOG_LEVEL": "WARNING",
        "VERIFYGUARD_SPOOL_DIR": str(tmp_path / "spool"),
        "VERIFYGUARD_DECISION_DEADLINE_MS": "5000",
        **env,
    }
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        command, env=os.environ | settings, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}; see server.log")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")
