"""What a callback builds on its way: counted, as test_facts_once.py counts the Facts."""

from __future__ import annotations

from typing import Any

import pytest

from app.services.intake import answers
from app.sinch import samples
from app.sinch.signature import SignedRequest
from tests.support import SinchSender


async def test_a_callbacks_signature_is_checked_without_a_signed_request(
    sinch: SinchSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify_parts takes the parts the callback holds (a frozen SignedRequest built per
    callback was ~7k instructions); a forged signature is still refused."""
    built: list[SignedRequest] = []
    init = SignedRequest.__init__

    def counting(self: SignedRequest, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(SignedRequest, "__init__", counting)
    answered = await sinch.post(samples.request_event(number="+46701234567"))
    assert answered.status_code == 200 and answered.json()["action"] == "allow"
    body = b'{"event":"VerificationRequestEvent"}'
    forged = {**sinch.headers(body), "x-timestamp": "2026-01-01T00:00:00Z"}
    refused = await sinch.client.post(sinch.path, content=body, headers=forged)
    assert refused.status_code == 401
    assert built == []


async def test_an_sms_answer_without_a_code_of_ours_merges_no_settings(
    sinch: SinchSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cached answer is copied as it is; only a code of ours needs the settings merged
    (answers.py), and the answer is the same bytes."""
    merged: list[dict[str, Any]] = []
    merge = answers._merge

    def counting(*args: Any) -> dict[str, Any]:
        merged.append(result := merge(*args))
        return result

    monkeypatch.setattr(answers, "_merge", counting)
    await sinch.post(samples.request_event(number="+46701234567"))  # the cache filled
    merged.clear()
    answered = await sinch.post(samples.request_event(number="+46701234568"))
    assert (
        answered.content == b'{"action":"allow","sms":{"codeType":"Numeric","expiry":"00:05:00"}}'
    )
    assert merged == []
