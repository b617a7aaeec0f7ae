"""Sample events shaped exactly like Sinch's, for `verifyguard send`, tests and the simulator."""

from __future__ import annotations

import uuid
from typing import Any


def new_verification_id() -> str:
    return str(uuid.uuid4())


def request_event(
    *,
    number: str,
    method: str = "sms",
    verification_id: str | None = None,
    price: float | None = 0.0453,
    currency: str = "EUR",
    reference: str | None = None,
    custom: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": verification_id or new_verification_id(),
        "event": "VerificationRequestEvent",
        "method": method,
        "identity": {"type": "number", "endpoint": number},
    }
    if price is not None:
        event["price"] = {"currencyId": currency, "amount": price}
        event["rate"] = {"currencyId": currency, "amount": 0.0}
    if reference is not None:
        event["reference"] = reference
    if custom is not None:
        event["custom"] = custom
    return event


def result_event(
    *,
    verification_id: str,
    number: str,
    status: str = "SUCCESSFUL",
    method: str = "sms",
    reason: str | None = None,
    source: str | None = "intercepted",
    reference: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": verification_id,
        "event": "VerificationResultEvent",
        "method": method,
        "identity": {"type": "number", "endpoint": number},
        "status": status,
    }
    for name, value in (("reason", reason), ("source", source), ("reference", reference)):
        if value is not None:
            event[name] = value
    return event


def delivered_event(
    *, verification_id: str, number: str, sms_result: str = "Successful"
) -> dict[str, Any]:
    return {
        "id": verification_id,
        "event": "VerificationSmsDeliveredEvent",
        "method": "sms",
        "identity": {"type": "number", "endpoint": number},
        "smsResult": sms_result,
    }
