"""Three server processes on one database: an attack is alerted once, contained on all three.

Also measures the issue's targets on this machine: from the attack's first event to the
first `alert.firing` at the webhook receiver, and to the containment answering on another
process than the one the attack reached first.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import httpx

from app.sinch import samples
from app.sinch.signature import callback_headers
from tests.alerts.conftest import BOOTSTRAP
from tests.alerts.helpers import ALLOWED, ATTACKED, LEGIT, policy_yaml
from tests.alerts.receiver import Receiver, free_port
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

PATH = "/sinch/verification/events"
AUTH = {"authorization": f"Bearer {BOOTSTRAP}"}


@asynccontextmanager
async def _server(database_url: str, spool: str) -> AsyncIterator[str]:
    port = free_port()
    env = os.environ | {
        "VERIFYGUARD_DATABASE_URL": database_url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
        "VERIFYGUARD_BOOTSTRAP_TOKEN": BOOTSTRAP,
        "VERIFYGUARD_ENVIRONMENT": "test",
        "VERIFYGUARD_LOG_LEVEL": "WARNING",
        "VERIFYGUARD_SPOOL_DIR": spool,
        "VERIFYGUARD_ALERTS__EVALUATE_SECONDS": "1",
        "VERIFYGUARD_ALERTS__DELIVERY_SECONDS": "0.5",
        # Answers are checked for their rule's action, not for speed: a process's first
        # decisions on a loaded machine must not become the fallback deny.
        "VERIFYGUARD_DECISION_DEADLINE_MS": "5000",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        await asyncio.wait_for(process.communicate(), 10)


async def _wait_ready(base: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                stderr = await process.stderr.read() if process.stderr else b""
                raise AssertionError(f"server exited: {stderr.decode()[-2000:]}")
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not become ready")


async def _decide(http: httpx.AsyncClient, base: str, number: str) -> str:
    body = json.dumps(samples.request_event(number=number)).encode()
    headers = callback_headers(
        key=TEST_APP_KEY, secret_b64=TEST_APP_SECRET, body=body, path=PATH, now=datetime.now(UTC)
    )
    response = await http.post(f"{base}{PATH}", content=body, headers=headers)
    assert response.status_code == 200
    return str(response.json()["action"])


def _firings(receiver: Receiver) -> list[dict[str, object]]:
    bodies = [r.json() for r in receiver.received if r.path == "/hook"]
    return [b for b in bodies if b["type"] == "alert.firing"]


async def test_three_processes_fire_once_and_all_contain(
    database_url: str, receiver: Receiver, tmp_path: object
) -> None:
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=10) as http:
        servers = [
            await stack.enter_async_context(_server(database_url, f"{tmp_path}/spool-{n}"))
            for n in range(3)
        ]
        put = await http.put(
            f"{servers[0]}/admin/policy",
            content=policy_yaml(receiver),
            headers={**AUTH, "content-type": "application/yaml"},
        )
        assert put.status_code == 200, put.text

        started = time.monotonic()
        for i in range(6):  # the attack, spread over the three processes
            assert await _decide(http, servers[i % 3], f"{ATTACKED}{i:03d}") == "allow"
        contained_after = None
        while contained_after is None or not _firings(receiver):
            if (
                contained_after is None
                and await _decide(http, servers[2], f"{ATTACKED}999") == "deny"
            ):
                contained_after = time.monotonic() - started
            assert time.monotonic() - started < 20, "no containment or no alert within 20 s"
            await asyncio.sleep(0.1)
        alerted_after = time.monotonic() - started
        for base in servers:  # every process denies within 2 s of the first one that did
            while await _decide(http, base, f"{ATTACKED}998") != "deny":
                assert time.monotonic() - started < contained_after + 2.0
                await asyncio.sleep(0.05)
            assert await _decide(http, base, LEGIT) == "allow"
            assert await _decide(http, base, ALLOWED) == "allow"
        await asyncio.sleep(3)  # several more evaluations on each process
        events = (await http.get(f"{servers[1]}/admin/alerts/events", headers=AUTH)).json()
        assert [e["kind"] for e in events] == ["alert.firing"]
        assert len(_firings(receiver)) == 1
        print(
            f"\nfirst alert.firing after {alerted_after:.2f}s, contained after {contained_after:.2f}s"
        )
