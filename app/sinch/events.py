"""Pydantic models of the events Sinch POSTs to the callback URL (unknown fields are kept)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

REQUEST_EVENT = "VerificationRequestEvent"
RESULT_EVENT = "VerificationResultEvent"
SMS_DELIVERED_EVENT = "VerificationSmsDeliveredEvent"
MAX_AMOUNT = 1e9


def contains_nul(value: Any) -> bool:
    """Whether a parsed JSON value holds U+0000 in a key or string (PostgreSQL stores none);
    without recursion, for values nested deeper than the interpreter's stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


# Sinch writes `flashCall` in older docs and `flashcall` on the wire: compare lowercase.
# pydantic-core strips and lowers it, in the JSON parse; a Python BeforeValidator
# (value.strip().lower()) was ~5k instructions a request event (micro-benchmark under
# callgrind). As Rust's trim, the strip leaves U+001C..U+001F, which str.strip removed; the
# length is checked before lowering (one of 32 that lowers longer is now kept).
Method = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=32)
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class Identity(_Wire):
    type: str = "number"
    endpoint: str = Field(min_length=1, max_length=64)


class Money(_Wire):
    currency_id: str | None = Field(default=None, alias="currencyId", max_length=8)
    # Finite and bounded: spend is counted in integer micros.
    amount: float | None = Field(default=None, allow_inf_nan=False, ge=-MAX_AMOUNT, le=MAX_AMOUNT)


class VerificationRequestEvent(_Wire):
    id: str = Field(min_length=1, max_length=128)
    event: Literal["VerificationRequestEvent"]
    method: Method
    identity: Identity
    price: Money | None = None
    rate: Money | None = None
    reference: str | None = Field(default=None, max_length=4096)
    custom: str | None = Field(default=None, max_length=4096)
    accept_language: list[str] | None = Field(default=None, alias="acceptLanguage")


class VerificationResultEvent(_Wire):
    id: str = Field(min_length=1, max_length=128)
    event: Literal["VerificationResultEvent"]
    method: Method
    identity: Identity | None = None
    status: str = Field(min_length=1, max_length=32)
    reason: str | None = Field(default=None, max_length=256)
    source: str | None = Field(default=None, max_length=256)
    reference: str | None = Field(default=None, max_length=4096)
    custom: str | None = Field(default=None, max_length=4096)


class VerificationSmsDeliveredEvent(_Wire):
    id: str = Field(min_length=1, max_length=128)
    event: Literal["VerificationSmsDeliveredEvent"]
    method: Method = "sms"
    identity: Identity | None = None
    sms_result: str = Field(alias="smsResult", min_length=1, max_length=64)
    reference: str | None = Field(default=None, max_length=4096)
    custom: str | None = Field(default=None, max_length=4096)
