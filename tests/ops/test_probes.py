"""Health, readiness, metrics and the one log line per callback, on every backend."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from httpx import AsyncClient

from app.sinch import samples
from tests.ops.scrape import sample
from tests.support import SinchSender

NUMBER = "+46701234567"


async def test_liveness_and_readiness(client: AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["policy_loaded"] is True
    assert body["schema"] and body["spool_depth"] == 0


async def test_readiness_is_degraded_while_the_spool_holds_entries(client: AsyncClient) -> None:
    outage = client.app.state.runtime.outage  # type: ignore[attr-defined]
    await outage.spool.append("callback", {"delivery": {}})  # held until replayed
    body = (await client.get("/readyz")).json()
    assert (body["status"], body["spool_depth"]) == ("degraded", 1)
    await outage.spool.remove([e.seq for e in await outage.spool.head(5)])


async def test_metrics_count_callbacks_decisions_and_signature_failures(
    client: AsyncClient, sinch: SinchSender
) -> None:
    before = (await client.get("/metrics")).text
    await sinch.post(samples.request_event(number=NUMBER))
    await sinch.post(samples.request_event(number="+449090000123"))  # premium rate: denied
    await sinch.post(samples.result_event(verification_id="v-1", number=NUMBER))
    await sinch.post(b"{not json")
    await sinch.post(samples.request_event(number=NUMBER), secret="AAAAAAAAAAAAAAAAAAAAAA==")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("verifyguard_callbacks_total", event="request", outcome="decided") == 2
    assert delta("verifyguard_callbacks_total", event="result", outcome="stored") == 1
    assert delta("verifyguard_callbacks_total", event="invalid", outcome="invalid") == 1
    assert delta("verifyguard_signature_failures_total", cause="bad_signature") == 1
    denied = {"action": "deny", "reason": "number_type_blocked", "mode": "enforce"}
    assert (
        sum(
            delta("verifyguard_decisions_total", rule=rule, **denied)
            for rule in re.findall(r'rule="([^"]+)"', after)
        )
        >= 1
    )
    assert delta("verifyguard_decision_seconds_count") == 2
    assert "verifyguard_spool_depth" in after and "verifyguard_database_up 1.0" in after


_LOG_SCRIPT = """
import asyncio, json, sys
from httpx import ASGITransport, AsyncClient
from app.main import create_app
from app.sinch import samples
from tests.conftest import make_settings
from tests.support import SinchSender

async def main():
    settings = make_settings(sys.argv[1], __import__("pathlib").Path(sys.argv[2]), log_level="INFO")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            sinch = SinchSender(http, path=settings.callback_path)
            event = samples.request_event(number=sys.argv[3])
            response = await sinch.post(event)
            result = samples.result_event(verification_id=event["id"], number=sys.argv[3])
            await sinch.post(result)
            print(json.dumps([event["id"], response.headers["x-request-id"]]))

asyncio.run(main())
"""


def test_one_log_line_per_callback_with_a_masked_number(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """In its own process: loggers are configured once per process (and cached)."""
    database = tmp_path / "verifyguard.db"
    shutil.copy(sqlite_template, database)
    url = f"sqlite+aiosqlite:///{database}"
    run = subprocess.run(
        [sys.executable, "-c", _LOG_SCRIPT, url, str(tmp_path), NUMBER],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    ident, request_id = json.loads(run.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    per_callback = [x for x in lines if x["event"] in ("decision.made", "callback.received")]
    assert [x["event"] for x in per_callback] == ["decision.made", "callback.received"]
    made = per_callback[0]
    assert (made["verification_id"], made["request_id"]) == (ident, request_id)
    assert (made["action"], made["reason"], made["mode"]) == ("allow", "default", "default")
    assert "rule" in made
    assert made["latency_ms"] >= 0 and made["event_type"] == "request"
    assert (
        per_callback[1]["event_type"] == "VerificationResultEvent"
        or per_callback[1]["event_type"] == "result"
    )
    assert NUMBER not in run.stderr, "numbers are masked"
