"""Facts: everything the engine may look at for one attempt, derived once, JSON round-trippable.

Number facts come from libphonenumber; the clock and the aggregates arrive from the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from app.rules.e164 import number_kind, number_region, parse_e164
from app.rules.fields import NUMBER_TYPES, WEEKDAYS, canonical_method

_TYPE_NAMES: dict[int, str] = {
    getattr(PhoneNumberType, name.upper()): name for name in NUMBER_TYPES
}


# Facts and NumberFacts are not frozen (as decision.py's trace records): a frozen
# dataclass's __init__ sets each field through object.__setattr__, ~6x the cost of a plain
# one (Facts: ~2.3 µs of ~2.7, once per request event; NumberFacts: once per number
# parsed). Nothing changes them once built; a NumberFacts is shared through the cache.
@dataclass(slots=True)
class NumberFacts:
    """What libphonenumber says about one endpoint; all None/False when it cannot parse it."""

    e164: str | None
    country: str | None
    calling_code: int | None
    number_type: str | None
    valid: bool


@dataclass(slots=True)
class Facts:
    """One attempt as the engine sees it. `aggregates` holds values by AggregateSpec.id."""

    method: str
    number: str | None
    country: str | None
    calling_code: int | None
    number_type: str | None
    valid: bool
    price_amount: float | None
    price_currency: str | None
    rate_amount: float | None
    rate_currency: str | None
    reference: str | None
    custom: str | None
    application: str | None
    now: datetime
    aggregates: Mapping[str, float] = field(default_factory=dict)

    def with_aggregates(self, aggregates: Mapping[str, float]) -> Facts:
        """A copy with `aggregates` added (they win over values already present).

        Built field by field: dataclasses.replace, which looks the fields up each time, took
        ~4x as long on the request path (test_facts checks that every field is carried)."""
        return Facts(
            self.method,
            self.number,
            self.country,
            self.calling_code,
            self.number_type,
            self.valid,
            self.price_amount,
            self.price_currency,
            self.rate_amount,
            self.rate_currency,
            self.reference,
            self.custom,
            self.application,
            self.now,
            {**self.aggregates, **aggregates},
        )

    def value(self, name: str, local: datetime) -> object:
        """The fact called `name`; `local` is `now` in the policy's timezone."""
        if name == "local_hour":
            return local.hour
        if name == "weekday":
            return WEEKDAYS[local.weekday()]
        return getattr(self, name)


# A parse costs ~87k instructions (e164.py; ~240k through phonenumbers.parse); an entry
# ~310 bytes (the endpoint, its E.164 string, the facts, the cache's node). The request and
# its success credit seconds later parse the same endpoint, and a user asks again within a
# minute: 4,096 numbers are 14 s at 300 distinct numbers a second. At 65,536 the cache kept
# ~20 MB, filled in the soak's first 4 minutes (docs/operations.md).
NUMBER_CACHE = 4_096


@lru_cache(maxsize=NUMBER_CACHE)
def number_facts(endpoint: str) -> NumberFacts:
    """Parse an E.164 endpoint (a leading '+' is required; no default region)."""
    text = endpoint.strip()
    if not text.startswith("+"):
        return NumberFacts(None, None, None, None, False)
    try:
        parsed = parse_e164(text)  # phonenumbers.parse(text, None), faster for "+digits"
    except NumberParseException:
        return NumberFacts(None, None, None, None, False)
    # The region once: for a calling code shared by several regions (+1, +44, +7) finding it
    # matches the number against each one's patterns, and is_valid_number would do it again.
    region = number_region(parsed)  # phonenumbers.region_code_for_number(parsed)
    calling_code = int(parsed.country_code or 0)
    kind = number_kind(parsed, region)  # phonenumbers.number_type(parsed), region known
    return NumberFacts(
        e164=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
        country=_country(region, calling_code),
        calling_code=calling_code,
        number_type=_TYPE_NAMES.get(kind, "unknown"),
        # What is_valid_number_for_region(parsed, region) computes: the number matches one of
        # its region's types (matching them again costs ~5 µs a number).
        valid=region is not None and kind != phonenumbers.PhoneNumberType.UNKNOWN,
    )


def _country(region: str | None, calling_code: int) -> str | None:
    """The number's region, or for an invalid number its calling code's main region."""
    if region is None:
        region = phonenumbers.region_code_for_country_code(calling_code)
    return region if isinstance(region, str) and region.isalpha() and region != "ZZ" else None


def derive_facts(
    *,
    method: str,
    endpoint: str,
    price_amount: float | None,
    price_currency: str | None,
    rate_amount: float | None,
    rate_currency: str | None,
    reference: str | None,
    custom: str | None,
    application: str | None,
    now: datetime,
    aggregates: Mapping[str, float] | None = None,
) -> Facts:
    """Facts for one attempt. A naive `now` is taken to be UTC. `aggregates`, when given, is
    the Facts' own, not copied: a decision fills the dict it passed once the attempt's windows
    are read (intake/decide.py), instead of building a second Facts (~23k instructions).

    The Facts are built by position, in the fields' order (as `with_aggregates` does):
    fifteen keywords cost ~6.6k instructions more a construction (callgrind), once per
    request event (test_facts checks each field gets its own value)."""
    number = number_facts(endpoint)
    return Facts(
        canonical_method(method),  # method
        number.e164,  # number
        number.country,  # country
        number.calling_code,  # calling_code
        number.number_type,  # number_type
        number.valid,  # valid
        price_amount,  # price_amount
        price_currency.upper() if price_currency else None,  # price_currency
        rate_amount,  # rate_amount
        rate_currency.upper() if rate_currency else None,  # rate_currency
        reference,  # reference
        custom,  # custom
        application.strip().lower() if application else None,  # application
        _utc(now),  # now
        {} if aggregates is None else aggregates,  # aggregates
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_FIELDS = tuple(f.name for f in dataclasses.fields(Facts))  # dataclasses.fields: ~1.5 us a call


def facts_to_json(facts: Facts) -> dict[str, Any]:
    """A JSON-able document of `facts`, for storing with the decision."""
    document = {name: getattr(facts, name) for name in _FIELDS}
    document["now"] = facts.now.isoformat()
    document["aggregates"] = dict(facts.aggregates)
    return document


def facts_from_json(document: Mapping[str, Any]) -> Facts:
    """The inverse of `facts_to_json`; unknown keys are ignored, missing ones are None."""
    names = {f.name for f in dataclasses.fields(Facts)}
    values: dict[str, Any] = {name: document.get(name) for name in names}
    values["now"] = _utc(datetime.fromisoformat(str(document["now"])))
    values["valid"] = bool(document.get("valid", False))
    values["method"] = str(document.get("method") or "")
    values["aggregates"] = {k: float(v) for k, v in (document.get("aggregates") or {}).items()}
    return Facts(**values)
