"""The emulated Sinch Verification lifecycle: start → request event → allow/deny → report.

Modelled on shared/spec/sinch-callbacks.md, not on a spec of Sinch's internals: a deny ends
as DENIED, a right code SUCCESSFUL, a wrong one FAIL/Invalid code, a late one FAIL/Expired,
a newer start for the same number ABORTED. Every change is posted as a result event.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import phonenumbers

from app.simulator.callback import CallbackTarget, action_of
from app.simulator.catalog import price_for
from app.simulator.wire import StatusDoc, StatusHead
from app.sinch import samples

METHODS = {"sms": "sms", "flashcall": "flashCall", "callout": "callout", "whatsapp": "whatsapp"}
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
DEFAULT_EXPIRY = timedelta(minutes=10)
Clock = Callable[[], datetime]


class ApiError(Exception):
    """An error answered as Sinch does: `{"errorCode": …, "message": …}`."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(slots=True)
class Verification:
    id: str
    method: str
    number: str
    reference: str | None
    custom: str | None
    price: float
    created_at: datetime
    expires_at: datetime
    status: str = "PENDING"
    reason: str | None = None
    source: str | None = None
    secret: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def status_document(self) -> StatusDoc:
        head: StatusHead = {"id": self.id, "method": self.method, "status": self.status}
        if self.reason is not None:
            head["reason"] = self.reason
        if self.reference is not None:
            head["reference"] = self.reference
        if self.source is not None:
            head["source"] = self.source
        return {
            **head,
            "identity": {"type": "number", "endpoint": self.number},
            "countryId": _country(self.number),
            "verificationTimestamp": self.created_at.isoformat().replace("+00:00", "Z"),
            "price": {"verificationPrice": {"currencyId": "EUR", "amount": self.price}},
        }


class Emulator:
    """In-memory verifications, and the callbacks Sinch would make for them."""

    def __init__(
        self, *, target: CallbackTarget, client: httpx.AsyncClient, clock: Clock | None = None
    ) -> None:
        self._target, self._client = target, client
        self._clock = clock or (lambda: datetime.now(UTC))
        self._verifications: dict[str, Verification] = {}

    async def start(self, body: dict[str, Any]) -> Verification:
        number, method = _identity(body), _method(body.get("method"))
        for old in self.find(number=number):
            if old.status == "PENDING":
                await self._finish(old, "ABORTED", None)
        now = self._clock()
        verification = Verification(
            id=samples.new_verification_id(),
            method=method,
            number=number,
            reference=_optional_str(body, "reference"),
            custom=_optional_str(body, "custom"),
            price=price_for(number),
            created_at=now,
            expires_at=now + DEFAULT_EXPIRY,
        )
        self._verifications[verification.id] = verification
        await self._ask(verification)
        return verification

    async def report(self, verification: Verification, body: dict[str, Any]) -> Verification:
        if _method(body.get("method")) != verification.method:
            raise ApiError(400, 40001, f"this verification uses method {verification.method}")
        if verification.status != "PENDING":
            return verification
        answer = body.get(METHODS[verification.method])
        if not isinstance(answer, dict):
            raise ApiError(400, 40001, f"{METHODS[verification.method]} object is required")
        given = str(answer.get("cli" if verification.method == "flashcall" else "code", ""))
        if self._clock() > verification.expires_at:
            await self._finish(verification, "FAIL", "Expired")
        elif secrets.compare_digest(given, verification.secret):
            verification.source = "manual"
            await self._finish(verification, "SUCCESSFUL", None)
        else:
            await self._finish(verification, "FAIL", "Invalid code")
        return verification

    def get(self, ident: str) -> Verification:
        if ident not in self._verifications:
            raise ApiError(404, 40400, f"verification {ident} not found")
        return self._verifications[ident]

    def find(
        self, *, number: str | None = None, method: str | None = None, reference: str | None = None
    ) -> list[Verification]:
        """Matching verifications, newest first."""
        found = [
            v
            for v in self._verifications.values()
            if (number is None or v.number == number)
            and (method is None or v.method == _method(method))
            and (reference is None or v.reference == reference)
        ]
        # reversed first: among equal timestamps the later start comes first
        return sorted(reversed(found), key=lambda v: v.created_at, reverse=True)

    def latest(self, **criteria: str) -> Verification:
        found = self.find(**criteria)
        if not found:
            raise ApiError(404, 40400, "no verification found")
        return found[0]

    async def _ask(self, verification: Verification) -> None:
        event = samples.request_event(
            number=verification.number,
            method=verification.method,
            verification_id=verification.id,
            price=verification.price,
            reference=verification.reference,
            custom=verification.custom,
        )
        response = await self._target.try_post(self._client, event)
        action = action_of(response) if response is not None else None
        if action != "allow":
            reason = "Denied by callback" if action == "deny" else "Invalid callback"
            await self._finish(verification, "DENIED", reason)
            return
        assert response is not None
        self._accept(verification, response.json())
        if verification.method == "sms":
            receipt = samples.delivered_event(
                verification_id=verification.id, number=verification.number
            )
            await self._post(receipt)

    def _accept(self, verification: Verification, answer: dict[str, Any]) -> None:
        """Take the code (or CLI) and expiry the callback chose, or pick them as Sinch would."""
        options = answer.get(METHODS.get(verification.method, ""), {}) or {}
        if verification.method == "flashcall":
            verification.secret = str(options.get("cli") or f"+4610{secrets.randbelow(10**7):07d}")
        else:
            verification.secret = str(options.get("code") or f"{secrets.randbelow(10**4):04d}")
        expiry = options.get("expiry")
        if isinstance(expiry, str) and re.fullmatch(r"\d{2}:\d{2}:\d{2}", expiry):
            hours, minutes, seconds = (int(part) for part in expiry.split(":"))
            verification.expires_at = verification.created_at + timedelta(
                hours=hours, minutes=minutes, seconds=seconds
            )
        verification.extra = options

    async def _finish(self, verification: Verification, status: str, reason: str | None) -> None:
        verification.status, verification.reason = status, reason
        event = samples.result_event(
            verification_id=verification.id,
            number=verification.number,
            status=status,
            method=verification.method,
            reason=reason,
            source=verification.source,
            reference=verification.reference,
        )
        await self._post(event)

    async def _post(self, event: dict[str, Any]) -> None:
        # Sinch does not tell the customer when one of its callbacks fails.
        await self._target.try_post(self._client, event)


def _identity(body: dict[str, Any]) -> str:
    identity = body.get("identity")
    if not isinstance(identity, dict) or identity.get("type") != "number":
        raise ApiError(400, 40001, 'identity must be {"type": "number", "endpoint": …}')
    endpoint = identity.get("endpoint")
    if not isinstance(endpoint, str) or not E164.match(endpoint):
        raise ApiError(400, 40001, "identity.endpoint must be an E.164 number")
    return endpoint


def _method(value: object) -> str:
    method = str(value or "").lower()
    if method not in METHODS:
        raise ApiError(400, 40001, f"method must be one of {', '.join(METHODS)}")
    return method


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return None if value is None else str(value)


def _country(number: str) -> str | None:
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return None
    return region if isinstance(region, str) and region.isalpha() else None
