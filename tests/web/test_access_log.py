"""uvicorn's access log, when a deployment turns it on, masks the numbers in request lines
(a filtered console page or audit query carries one in its query string)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.store.migrate import upgrade
from tests.support import TEST_APP_KEY, TEST_APP_SECRET
from tests.support_server import free_port

TOKEN = "vg_access-log-bootstrap-token"
NUMBER = "46700000123"


def test_access_log_lines_mask_numbers(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'access.db'}"
    upgrade(url)
    port, log_path = free_port(), tmp_path / "server.log"
    env = os.environ | {
        "VERIFYGUARD_DATABASE_URL": url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
        "VERIFYGUARD_ENVIRONMENT": "test",
        "VERIFYGUARD_BOOTSTRAP_TOKEN": TOKEN,
        "VERIFYGUARD_SPOOL_DIR": str(tmp_path / "spool"),
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    command += ["--port", str(port), "--log-level", "info"]  # access log on (uvicorn's default)
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
        try:
            _wait_ready(base)
            auth = {"authorization": f"Bearer {TOKEN}"}
            for path in (
                f"/decisions?number=%2B{NUMBER}&action=deny",
                f"/audit/verifications?number=%2B{NUMBER}",
                f"/audit/verifications?number=+{NUMBER}",
                f"/audit/verifications?number={NUMBER}",
            ):
                httpx.get(base + path, headers=auth, timeout=10)
        finally:
            server.terminate()
            server.wait(timeout=15)
    text = log_path.read_text()
    assert "GET /audit/verifications?number=" in text, text  # the lines were logged
    assert NUMBER not in text, text
    assert text.count("4670****123") == 4, text


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready")
