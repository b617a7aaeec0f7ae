"""The store batch's rows are encoded by serializers built from their dataclasses: the bytes
to_json's inference wrote for them, awkward strings and non-finite floats included."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

from app.store.pg_batch_store import _CLAIM_EXCLUDE, _CLAIMS, _REQUEST_EXCLUDE, _REQUESTS
from app.store.rows import CallbackClaim, RequestRow

NOW = datetime(2026, 3, 2, 10, 0, 1, 123456, tzinfo=UTC)
AWKWARD = 'quote " backslash \\ slash / tab \t newline \n é 漢字 🙂 \u2028 \x01'


def _request(tag: str, **values: Any) -> RequestRow:
    row = RequestRow(
        id=f"v-{tag}",
        created_at=NOW,
        app_key=AWKWARD,
        method="sms",
        number="+46701234567",
        country="SE",
        calling_code=46,
        number_type="mobile",
        number_valid=True,
        price_amount=0.03,
        price_currency="EUR",
        rate_amount=None,
        rate_currency=None,
        reference=AWKWARD,
        custom=None,
        requested_at=NOW,
        action="deny",
        reason=AWKWARD,
        decided_by="enforce",
        rule_id=7,
        rule_name=AWKWARD,
        rule_revision=3,
        answer={"action": "deny", "nested": {"x": [1, 2.5, None, AWKWARD]}},
        decided_at=NOW,
        decision_ms=1.234,
        decision={"not": "sent"},
        request_callback_id=17,
    )
    return dataclasses.replace(row, **values)


def _claim(tag: str) -> CallbackClaim:
    return CallbackClaim(
        received_at=NOW,
        app_key=None,
        event="VerificationRequestEvent",
        verification_id=f"v-{tag}",
        dedupe_key=AWKWARD,
        signature="valid",
        http_status=200,
        error_code=None,
        content_type="application/json",
        raw_body=b"{}",
    )


def test_rows_encode_as_to_json_inferred_them() -> None:
    rows = [
        _request("plain"),
        _request("infinite", price_amount=float("inf"), rate_amount=float("-inf")),
        _request("nan", decision_ms=float("nan"), shadow_deny=True, degraded=True),
    ]
    expected = to_json(rows, exclude=_REQUEST_EXCLUDE, inf_nan_mode="strings")
    assert _REQUESTS.to_json(rows, exclude=_REQUEST_EXCLUDE) == expected
    assert b'"Infinity"' in expected and b'"NaN"' in expected and b"not" not in expected
    claims = [_claim("a"), _claim("b")]
    expected = to_json(claims, exclude=_CLAIM_EXCLUDE, inf_nan_mode="strings")
    assert _CLAIMS.to_json(claims, exclude=_CLAIM_EXCLUDE) == expected
