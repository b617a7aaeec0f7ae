"""A stored attempt as the engine sees it: facts from the stored columns (libphonenumber only
for rows stored before those columns existed), or why it cannot be replayed."""

from __future__ import annotations

from app.rules.facts import Facts, number_facts
from app.rules.fields import canonical_method
from app.store.backtests import StoredAttempt

SUCCESSFUL = "SUCCESSFUL"
ANONYMIZED = "#"  # retention replaces a number by `<first digits>#<keyed hash>`


def skip_reason(attempt: StoredAttempt) -> str | None:
    """Why the attempt cannot be replayed faithfully, or None."""
    if attempt.action is None:
        return "never_decided"
    if not attempt.number:
        return "no_number"
    if ANONYMIZED in attempt.number:
        return "number_anonymized"
    if not attempt.method:
        return "no_method"
    return None


def attempt_facts(attempt: StoredAttempt, aggregates: dict[str, float]) -> Facts:
    """The attempt's facts at its own time, holding `aggregates` (the replay fills it)."""
    country, calling_code = attempt.country, attempt.calling_code
    number_type, valid = attempt.number_type, attempt.number_valid
    if number_type is None or valid is None or calling_code is None:
        parsed = number_facts(attempt.number or "")
        country = country if country is not None else parsed.country
        calling_code = calling_code if calling_code is not None else parsed.calling_code
        number_type = number_type if number_type is not None else parsed.number_type
        valid = valid if valid is not None else parsed.valid
    values = (
        canonical_method(attempt.method or ""),
        attempt.number,
        country,
        calling_code,
        number_type,
        bool(valid),
        attempt.price_amount,
        attempt.price_currency.upper() if attempt.price_currency else None,
        attempt.rate_amount,
        attempt.rate_currency.upper() if attempt.rate_currency else None,
        attempt.reference,
        attempt.custom,
        attempt.app_key.strip().lower() if attempt.app_key else None,
        attempt.requested_at,
        aggregates,
    )
    return Facts(*values)  # by position: a plain slotted dataclass (rules/facts.py)


def verified(attempt: StoredAttempt) -> bool:
    return attempt.status == SUCCESSFUL
