"""Facts from real numbers (libphonenumber) and their JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone

import phonenumbers
import pytest

from app.rules.facts import Facts, derive_facts, facts_from_json, facts_to_json, number_facts

from .factories import NOW, make_facts


@pytest.mark.parametrize(
    ("endpoint", "country", "calling_code", "number_type"),
    [
        ("+46701234567", "SE", 46, "mobile"),
        ("+447400123456", "GB", 44, "mobile"),
        ("+12015550123", "US", 1, "fixed_line_or_mobile"),
        ("+4915123456789", "DE", 49, "mobile"),
        ("+5511961234567", "BR", 55, "mobile"),
        ("+2348031234567", "NG", 234, "mobile"),
        ("+449090901234", "GB", 44, "premium_rate"),
        ("+448001234567", "GB", 44, "toll_free"),
    ],
)
def test_valid_numbers(endpoint: str, country: str, calling_code: int, number_type: str) -> None:
    facts = number_facts(endpoint)
    assert (facts.e164, facts.valid) == (endpoint, True)
    assert (facts.country, facts.calling_code, facts.number_type) == (
        country,
        calling_code,
        number_type,
    )


def test_formatting_is_normalised_to_e164() -> None:
    assert number_facts(" +46 70-123 45 67 ").e164 == "+46701234567"


@pytest.mark.parametrize("endpoint", ["46701234567", "", "+", "+999123", "hello", "+abc"])
def test_unparseable_numbers(endpoint: str) -> None:
    facts = number_facts(endpoint)
    assert (facts.e164, facts.valid, facts.country, facts.number_type) == (None, False, None, None)


def test_parseable_but_invalid_number_keeps_its_country() -> None:
    facts = number_facts("+4470")
    assert (facts.e164, facts.valid, facts.country, facts.number_type) == (
        "+4470",
        False,
        "GB",
        "unknown",
    )


def test_non_geographic_number_has_no_country() -> None:
    facts = number_facts("+883510012345")
    assert (facts.valid, facts.country, facts.calling_code) == (True, None, 883)


def test_derive_facts_normalises() -> None:
    facts = derive_facts(
        method="flashCall",
        endpoint="+46701234567",
        price_amount=0.1,
        price_currency="eur",
        rate_amount=None,
        rate_currency=None,
        reference=None,
        custom=None,
        application=" ABC-Key ",
        now=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))),
    )
    assert (facts.method, facts.price_currency, facts.application) == (
        "flashcall",
        "EUR",
        "abc-key",
    )
    assert facts.now == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert facts.now.tzinfo is UTC
    assert facts.aggregates == {}


def test_naive_now_is_taken_as_utc() -> None:
    facts = make_facts()
    naive = derive_facts(
        method="sms",
        endpoint="+46701234567",
        price_amount=None,
        price_currency=None,
        rate_amount=None,
        rate_currency=None,
        reference=None,
        custom=None,
        application=None,
        now=NOW.replace(tzinfo=None),
    )
    assert naive.now == facts.now


def test_with_aggregates_merges() -> None:
    facts = make_facts(aggregates={"a": 1.0}).with_aggregates({"b": 2.0})
    assert facts.aggregates == {"a": 1.0, "b": 2.0}


def test_with_aggregates_carries_every_field() -> None:
    """with_aggregates lists the fields itself: a field added to Facts must be added there."""
    values: dict[str, object] = {}
    for index, spec in enumerate(dataclasses.fields(Facts)):
        values[spec.name] = f"value-{index}"
    values["aggregates"] = {"a": 1.0}
    facts = Facts(**values)  # type: ignore[arg-type]
    copied = facts.with_aggregates({"b": 2.0})
    expected = dataclasses.replace(facts, aggregates={"a": 1.0, "b": 2.0})
    assert copied == expected


def test_facts_json_round_trip() -> None:
    facts = make_facts(aggregates={"attempts:number:3600": 3.0})
    document = json.loads(json.dumps(facts_to_json(facts)))
    assert facts_from_json(document) == facts


def test_validity_and_type_agree_with_libphonenumber_everywhere() -> None:
    """number_facts derives validity from the type it found (no second match): the same
    answer as is_valid_number / number_type, for every region's example numbers of every
    type, and for numbers made invalid by a digit too many or too few."""
    endpoints = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                endpoints |= {e164, e164 + "7", e164[:-1]}
    assert len(endpoints) > 2_500
    for endpoint in sorted(endpoints):
        parsed = phonenumbers.parse(endpoint, None)
        facts = number_facts.__wrapped__(endpoint)
        assert facts.valid == phonenumbers.is_valid_number(parsed), endpoint
        assert (facts.number_type == "unknown") == (
            phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.UNKNOWN
        ), endpoint


def test_parsed_numbers_kept_stay_small_however_many_numbers_arrive() -> None:
    """The cache of parsed numbers keeps ~310 bytes a number; traffic of distinct numbers
    (300 a second in the soak) must not grow it past a couple of megabytes (at 65,536 entries
    it kept ~20 MB, the soak's RSS growth)."""
    number_facts.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(10_000):
            number_facts(f"+4670{n:07d}")  # distinct valid Swedish mobile numbers
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        number_facts.cache_clear()
    assert kept < 2_000_000, kept


def test_derive_facts_puts_each_value_in_its_field() -> None:
    """derive_facts builds the Facts by position: each input lands in its own field."""
    aggregates = {"attempts:number:3600": 4.0}
    facts = derive_facts(
        method="SMS",
        endpoint="+46701234567",
        price_amount=1.5,
        price_currency="eur",
        rate_amount=2.5,
        rate_currency="usd",
        reference="ref-1",
        custom="custom-1",
        application=" App-Key ",
        now=NOW,
        aggregates=aggregates,
    )
    expected = Facts(
        method="sms",
        number="+46701234567",
        country="SE",
        calling_code=46,
        number_type="mobile",
        valid=True,
        price_amount=1.5,
        price_currency="EUR",
        rate_amount=2.5,
        rate_currency="USD",
        reference="ref-1",
        custom="custom-1",
        application="app-key",
        now=NOW,
        aggregates=aggregates,
    )
    assert facts == expected
    assert facts.aggregates is aggregates
