"""`verifyguard send`: the event it posts is signed as Sinch signs, for the configured app."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.settings import Settings
from app.sinch.signature import SignatureVerifier, SignedRequest
from tests.support import TEST_APP_KEY, TEST_APP_SECRET


class _Answer:
    status_code = 200
    text = '{"action":"allow"}'


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `send` hands to httpx.post (nothing leaves the process)."""
    monkeypatch.setenv("VERIFYGUARD_SINCH_APPS", json.dumps({TEST_APP_KEY: TEST_APP_SECRET}))
    seen: dict[str, Any] = {}

    def post(url: str, *, content: bytes, headers: dict[str, str], timeout: float) -> _Answer:
        seen.update(url=url, body=content, headers=headers)
        return _Answer()

    monkeypatch.setattr(httpx, "post", post)
    return seen


def test_send_posts_a_signed_request_event(posted: dict[str, Any]) -> None:
    args = ["send", "--id", "v-1", "--number", "+46701234567", "--url", "http://guard.test/"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "POST http://guard.test/sinch/verification/events  VerificationRequestEvent id=v-1 "
        "number=+46701234567 method=sms",
        '-> 200 {"action":"allow"}',
    ]
    settings = Settings()
    assert posted["url"] == "http://guard.test" + settings.callback_path
    event = json.loads(posted["body"])
    assert event["id"] == "v-1" and event["identity"]["endpoint"] == "+46701234567"
    verifier = SignatureVerifier(settings.app_secrets(), tolerance=None)
    request = SignedRequest("POST", settings.signed_path, posted["body"], posted["headers"])
    assert verifier.verify(request, now=datetime.now(UTC)) == TEST_APP_KEY.lower()


def test_send_result_and_receipt_events(posted: dict[str, Any]) -> None:
    for kind, event_name in (
        ("result", "VerificationResultEvent"),
        ("delivered", "VerificationSmsDeliveredEvent"),
    ):
        result = CliRunner().invoke(cli, ["send", "--event", kind, "--id", "v-2"])
        assert result.exit_code == 0, result.output
        assert json.loads(posted["body"])["event"] == event_name
        assert posted["url"].startswith("http://127.0.0.1:8000/")
