"""app/rules/e164.py answers exactly as the libphonenumber functions it stands in for.

For every calling code: each region's example number of each type, and random digit
strings after the code (national prefixes and leading zeros included, every length up to
past the longest valid), plus the forms it must hand to `phonenumbers.parse` itself.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from app.rules.e164 import number_kind, number_region, parse_e164
from app.rules.facts import NumberFacts, number_facts

_TYPES = [getattr(PhoneNumberType, name) for name in dir(PhoneNumberType) if name.isupper()]
_ODD = [
    "+",
    "+1",
    "+12",
    "+123",
    "+0123456",
    "+46 70 123 45 67",
    "+46-70-1234567",
    "+46701234567x12",
    "+46701234567;ext=5",
    "46701234567",
    "++46701234567",
    "+\u0664\u0666\u0667\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # Arabic digits
    "+3906123456",
    "+39000000",
    "+390000000000",
    "+3900",
    "+8001234",
    "+999123456",
    "+4670123456789012345678",
    "+1" + "2" * 30,
]


def _examples(code: int) -> list[str]:
    found: list[PhoneNumber | None] = []
    for region in COUNTRY_CODE_TO_REGION_CODE[code]:
        if region == "001":
            found.append(phonenumbers.example_number_for_non_geo_entity(code))
        else:
            found.extend(phonenumbers.example_number_for_type(region, t) for t in _TYPES)
    return [phonenumbers.format_number(n, 0) for n in found if n is not None]


def _texts() -> list[str]:
    rnd = random.Random(17)
    texts = list(_ODD)
    for code in COUNTRY_CODE_TO_REGION_CODE:
        texts.extend(_examples(code))
        for _ in range(40):
            prefix = rnd.choice(["", "0", "00", "1", "9", "8"])
            digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 19)))
            texts.append(f"+{code}{prefix}{digits}")
    return texts


TEXTS = _texts()


def _outcome(parse: object, text: str) -> tuple[str, object]:
    try:
        return "parsed", parse(text)  # type: ignore[operator]
    except NumberParseException as error:
        return "rejected", error.error_type


def test_parse_e164_is_phonenumbers_parse() -> None:
    differ = [
        text
        for text in TEXTS
        if _outcome(parse_e164, text) != _outcome(lambda t: phonenumbers.parse(t, None), text)
    ]
    assert differ == []


def test_region_and_kind_are_libphonenumbers() -> None:
    parsed = [n for kind, n in (_outcome(parse_e164, t) for t in TEXTS) if kind == "parsed"]
    assert len(parsed) > 5_000
    wrong_region = [n for n in parsed if number_region(n) != phonenumbers.region_code_for_number(n)]
    wrong_kind = [
        n
        for n in parsed
        if number_kind(n, phonenumbers.region_code_for_number(n)) != phonenumbers.number_type(n)
    ]
    assert (wrong_region, wrong_kind) == ([], [])
    kinds = {phonenumbers.number_type(n) for n in parsed}
    assert len(kinds) >= 9  # the table reached every kind of number, not only mobiles


def _reference(endpoint: str) -> NumberFacts:
    """number_facts as written with libphonenumber's public functions only."""
    text = endpoint.strip()
    try:
        if not text.startswith("+"):
            raise NumberParseException(NumberParseException.NOT_A_NUMBER, "no +")
        parsed = phonenumbers.parse(text, None)
    except NumberParseException:
        return NumberFacts(None, None, None, None, False)
    region = phonenumbers.region_code_for_number(parsed)
    code = int(parsed.country_code or 0)
    main = region or phonenumbers.region_code_for_country_code(code)
    kind = phonenumbers.number_type(parsed)
    names = {v: k for k, v in vars(PhoneNumberType).items() if k.isupper()}
    return NumberFacts(
        e164=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
        country=main if main.isalpha() and main != "ZZ" else None,
        calling_code=code,
        number_type=names[kind].lower(),
        valid=phonenumbers.is_valid_number(parsed),
    )


@pytest.mark.parametrize("endpoint", [*_ODD, " +46701234567 ", "+12125550123", "+18092345678"])
def test_number_facts_match_the_public_functions(endpoint: str) -> None:
    assert number_facts(endpoint) == _reference(endpoint)


def test_number_facts_match_the_public_functions_for_every_calling_code() -> None:
    sample = TEXTS[:: max(1, len(TEXTS) // 3_000)]
    assert [number_facts(t) for t in sample] == [_reference(t) for t in sample]
