"""Graceful shutdown of a real server: on SIGTERM the lifespan drains and closes the spool,
and the process exits without an error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.sinch import samples
from app.sinch.signature import callback_headers
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

PATH = "/sinch/verification/events"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def test_sigterm_finishes_and_exits_cleanly(sqlite_template: Path, tmp_path: Path) -> None:
    database = tmp_path / "verifyguard.db"
    shutil.copy(sqlite_template, database)
    port = _free_port()
    env = os.environ | {
        "VERIFYGUARD_ENVIRONMENT": "test",
        "VERIFYGUARD_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
        "VERIFYGUARD_SPOOL_DIR": str(tmp_path / "spool"),
        "VERIFYGUARD_LOG_LEVEL": "INFO",
    }
    command = [
        sys.executable,
        "-c",
        "from app.cli import main; main()",
        "serve",
        "--port",
        str(port),
    ]
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, process)
        body = json.dumps(samples.request_event(number="+46701234567")).encode()
        headers = callback_headers(
            key=TEST_APP_KEY,
            secret_b64=TEST_APP_SECRET,
            body=body,
            path=PATH,
            now=datetime.now(UTC),
        )
        assert httpx.post(f"{base}{PATH}", content=body, headers=headers).status_code == 200
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # uvicorn re-raises SIGTERM once its graceful shutdown is done.
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    stopped = [json.loads(line) for line in err.splitlines() if '"app.stopped"' in line]
    assert stopped and stopped[0]["spool_depth"] == 0
