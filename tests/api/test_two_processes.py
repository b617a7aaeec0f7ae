"""A policy change made through one server process is used by another from its next request."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.sinch import samples
from app.sinch.signature import callback_headers
from tests.support import TEST_APP_KEY, TEST_APP_SECRET
from tests.support_server import CALLBACK_PATH as PATH
from tests.support_server import served

TOKEN = "vg_test_bootstrap_token_two_processes"
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


def test_policy_change_on_one_process_applies_on_the_other(
    database_url: str, tmp_path: Path
) -> None:
    token = {"VERIFYGUARD_BOOTSTRAP_TOKEN": TOKEN}
    with (
        served(database_url, tmp_path / "first", **token) as first,
        served(database_url, tmp_path / "second", **token) as second,
    ):
        assert _decide(second, "+46701234561") == "allow"
        _put_policy(first, DENY_SWEDEN)
        assert _decide(second, "+46701234562") == "deny"
        assert _decide(first, "+46701234563") == "deny"
        _put_policy(second, {"rules": []})
        assert _decide(first, "+46701234564") == "allow"
