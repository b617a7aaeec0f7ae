"""How audit answers look: Sinch-shaped verifications, flat export rows, masking, cursors."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

from app.logs import mask_number
from app.services.audit.documents import DecisionDoc, Price, VerificationDoc
from app.store.audit import Cursor
from app.store.audit_rows import Verification

T = TypeVar("T")
_NUMBER = re.compile(r"\+\d{7,15}")

EXPORT_FIELDS = (
    "id",
    "requested_at",
    "app_key",
    "method",
    "number",
    "country",
    "calling_code",
    "number_type",
    "price_amount",
    "price_currency",
    "reference",
    "action",
    "reason",
    "decided_by",
    "rule_name",
    "rule_revision",
    "shadow_deny",
    "status",
    "status_reason",
    "status_source",
    "result_at",
    "sms_result",
)


def mask_text(text: str) -> str:
    """Mask every E.164-looking number inside a text (+46701234233 → +4670****233)."""
    return _NUMBER.sub(lambda m: mask_number(m.group()) or "", text)


def mask_deep(value: T) -> T:
    """Mask numbers in every string and key of a JSON-like value (bodies, traces, facts);
    the value keeps its shape, so a typed document stays one."""
    masked: T = _mask(value)
    return masked


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value) if "+" in value else value
    if isinstance(value, dict):
        return {_mask(key): _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def decision_summary(row: Verification) -> DecisionDoc:
    return {
        "action": row.action,
        "reason": row.reason,
        "decidedBy": row.decided_by,
        "rule": row.rule_name,
        "ruleId": row.rule_id,
        "ruleRevision": row.rule_revision,
        "shadowDeny": bool(row.shadow_deny),
        "degraded": bool(row.degraded),
        "decidedAt": iso(row.decided_at),
        "decisionMs": row.decision_ms,
    }


def sinch_shaped(row: Verification, *, reveal: bool) -> VerificationDoc:
    """A verification as Sinch's status API shows it, plus where it came from and our decision."""
    amount, currency = row.price_amount, row.price_currency
    price: Price = {"verificationPrice": {"currencyId": currency, "amount": amount}}
    shaped: VerificationDoc = {
        "id": row.id,
        "method": row.method,
        "status": row.status or "PENDING",
        "reason": row.status_reason,
        "reference": row.reference,
        "identity": {"type": "number", "endpoint": row.number},
        "countryId": row.country,
        "verificationTimestamp": iso(row.result_at or row.requested_at),
        "source": row.status_source,
        "price": price if amount is not None or currency is not None else None,
        "custom": row.custom,
        "application": row.app_key,
        "callingCode": row.calling_code,
        "numberType": row.number_type,
        "requestedAt": iso(row.requested_at),
        "resultAt": iso(row.result_at),
        "smsResult": row.sms_result,
        "decision": decision_summary(row),
    }
    return shaped if reveal else mask_deep(shaped)


def export_row(row: Verification, *, reveal: bool) -> dict[str, Any]:
    """A flat row for CSV and NDJSON: one column per field, timestamps as ISO text."""
    flat = {name: getattr(row, name) for name in EXPORT_FIELDS}
    flat["requested_at"], flat["result_at"] = iso(row.requested_at), iso(row.result_at)
    flat["shadow_deny"] = bool(row.shadow_deny)
    return flat if reveal else mask_deep(flat)


def encode_cursor(row: Verification) -> str:
    raw = json.dumps([iso(row.requested_at), row.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """Parse a cursor made by `encode_cursor`; ValueError when it was not."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        at, ident = json.loads(raw)
        moment = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise ValueError("malformed cursor") from None
    if not isinstance(ident, str) or "\x00" in ident or moment.tzinfo is None:
        raise ValueError("malformed cursor")
    return Cursor(requested_at=moment, id=ident)


def parse_body(raw: bytes) -> tuple[Any, str | None]:
    """(parsed JSON, None) when the body is JSON, else (None, the text as received)."""
    try:
        return json.loads(raw), None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, raw.decode("utf-8", errors="replace")
