"""The facts of a VerificationRequestEvent, derived the same way for decisions and dry runs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from app.rules.facts import Facts, derive_facts
from app.sinch.events import VerificationRequestEvent


def event_facts(
    event: VerificationRequestEvent,
    *,
    application: str | None,
    now: datetime,
    aggregates: Mapping[str, float] | None = None,
) -> Facts:
    """Facts for a request event from Sinch application `application`, received at `now`
    (`aggregates`: the Facts' own, see derive_facts)."""
    price, rate = event.price, event.rate
    return derive_facts(
        method=event.method,
        endpoint=event.identity.endpoint,
        price_amount=price.amount if price else None,
        price_currency=price.currency_id if price else None,
        rate_amount=rate.amount if rate else None,
        rate_currency=rate.currency_id if rate else None,
        reference=event.reference,
        custom=event.custom,
        application=application,
        now=now,
        aggregates=aggregates,
    )
