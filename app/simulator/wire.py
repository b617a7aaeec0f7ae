"""The Sinch Verification REST documents the emulator answers with, as TypedDicts of their wire
shapes (keys in wire order; FastAPI documents and serializes the handlers' answers from them).
"""

from __future__ import annotations

from typing import Literal, NotRequired

# pydantic reads TypedDicts only from typing_extensions before Python 3.12 (pydantic needs it).
from typing_extensions import TypedDict


class Identity(TypedDict):
    type: Literal["number"]
    endpoint: str


class Money(TypedDict):
    currencyId: str
    amount: float


class Price(TypedDict):
    verificationPrice: Money


class StatusHead(TypedDict):
    """A status's first keys; absent ones are unknown."""

    id: str
    method: str
    status: str
    reason: NotRequired[str]
    reference: NotRequired[str]
    source: NotRequired[str]


class StatusDoc(StatusHead):
    """GET …/verifications/…: a verification's status."""

    identity: Identity
    countryId: str | None
    verificationTimestamp: str
    price: Price


class SmsStarted(TypedDict):
    template: str
    interceptionTimeout: int


class FlashCallStarted(TypedDict):
    cliFilter: str
    interceptionTimeout: int
    reportTimeout: int


class NothingMore(TypedDict):
    """Callout and WhatsApp starts say nothing more than their method."""


class Link(TypedDict):
    rel: str
    href: str
    method: str


class StartedDoc(TypedDict):
    id: str
    method: str
    sms: NotRequired[SmsStarted]
    flashCall: NotRequired[FlashCallStarted]
    callout: NotRequired[NothingMore]
    whatsapp: NotRequired[NothingMore]
    _links: list[Link]


class ReportedDoc(TypedDict):
    """PUT …/verifications/…: the status after the report."""

    id: str
    method: str
    status: str
    reason: NotRequired[str]


class SecretDoc(TypedDict):
    """Emulator only: what the phone would have received (`cli` for a flash call)."""

    id: str
    method: str
    code: NotRequired[str]
    cli: NotRequired[str]
