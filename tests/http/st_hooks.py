"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.http.st_hooks): the callback's generated
bodies are signed as Sinch signs them, so the fuzzing reaches its parser and decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import schemathesis

from app.sinch.signature import callback_headers
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

CALLBACK = "/sinch/verification/events"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.path != CALLBACK or case.method.upper() != "POST":
        return
    body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    case.body = body
    signed = callback_headers(
        key=TEST_APP_KEY,
        secret_b64=TEST_APP_SECRET,
        body=body,
        path=CALLBACK,
        now=datetime.now(UTC),
    )
    case.headers = {**(case.headers or {}), **signed}
