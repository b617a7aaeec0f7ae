"""A policy change made through one server process is used by another from its next request."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx

from app.sinch import samples
from app.sinch.signature import callback_headers
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

TOKEN = "vg_test_bootstrap_token_two_processes"
PATH = "/sinch/verification/events"
DENY_SWEDEN = {
    "rules": [
        {
            "name": "no-sweden",
            "action": "deny",
            "reason": "country_blocked",
            "when": {"field": "country", "op": "in", "value": ["SE"]},
        }
    ]
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(database_url: str) -> Iterator[str]:
    port = _free_port()
    env = os.environ | {
        "VERIFYGUARD_DATABASE_URL": database_url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
        "VERIFYGUARD_BOOTSTRAP_TOKEN": TOKEN,
        "VERIFYGUARD_ENVIRONMENT": "test",
        "VERIFYGUARD_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def _decide(base: str, number: str) -> str:
    body = json.dumps(samples.request_event(number=number)).encode()
    headers = callback_headers(
        key=TEST_APP_KEY, secret_b64=TEST_APP_SECRET, body=body, path=PATH, now=datetime.now(UTC)
    )
    response = httpx.post(f"{base}{PATH}", content=body, headers=headers, timeout=10)
    assert response.status_code == 200
    return str(response.json()["action"])


def _put_policy(base: str, policy: dict[str, object]) -> None:
    response = httpx.put(
        f"{base}/admin/policy",
        json=policy,
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_policy_change_on_one_process_applies_on_the_other(database_url: str) -> None:
    with _server(database_url) as first, _server(database_url) as second:
        assert _decide(second, "+46701234561") == "allow"
        _put_policy(first, DENY_SWEDEN)
        assert _decide(second, "+46701234562") == "deny"
        assert _decide(first, "+46701234563") == "deny"
        _put_policy(second, {"rules": []})
        assert _decide(first, "+46701234564") == "allow"
