"""`parse_e164`: what `phonenumbers.parse(text, None)` returns, without its generic steps for
the one form Sinch sends, "+" and ASCII digits.

For that form `parse` finds nothing to do in its first steps: no RFC 3966 context or
extension to strip, no punctuation or non-ASCII digits to normalize, no IDD prefix; those
regex passes were ~60 % of a parse (~140k instructions of ~240k for a number's facts).
This runs the steps that do apply, in the same order with the same library functions:
the country code (the first 1-3 digits that are one), the national prefix stripped when
what remains is a possible length, the Italian leading zeros. Anything else, and any
number those steps would reject, goes to `phonenumbers.parse` itself (which raises).
tests/rules/test_e164.py holds it to `parse` for every calling code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from phonenumbers import (
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberDesc,
    PhoneNumberType,
    national_significant_number,
    parse,
)
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    ValidationResult,
    _maybe_strip_national_prefix_carrier_code,
    _test_number_length,
    region_code_for_country_code,
)

# "+", a non-zero digit, then ASCII digits: 3 to 17 in all (3: parse rejects 2 or fewer
# after the "+"; a national number over 17 digits is rejected below by the fallback).
_FORM = re.compile(r"\+([1-9][0-9]{2,19})")
_KEEP_PREFIX = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)


def parse_e164(text: str) -> PhoneNumber:
    """`phonenumbers.parse(text, None)`; raises NumberParseException as it does."""
    form = _FORM.fullmatch(text)
    if form is None:
        return parse(text, None)
    digits = form.group(1)
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return parse(text, None)
    national = digits[size:]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(
        code, region_code_for_country_code(code)
    )
    if metadata is None or len(national) < 2:
        return parse(text, None)
    _, stripped, _ = _maybe_strip_national_prefix_carrier_code(national, metadata)
    if _test_number_length(stripped, metadata) not in _KEEP_PREFIX:
        national = stripped
    if not 2 <= len(national) <= 17:
        return parse(text, None)
    number = PhoneNumber(country_code=code, national_number=int(national))
    if len(national) > 1 and national[0] == "0":
        number.italian_leading_zero = True
        zeros = len(national) - len(national.lstrip("0"))
        zeros = min(zeros, len(national) - 1)  # an all-zero number keeps its last "0"
        if zeros != 1:
            number.number_of_leading_zeros = zeros
    return number


# A number type's test: its possible lengths (None: any) and its pattern, compiled once.
_Test = tuple[frozenset[int] | None, re.Pattern[str]]
_SPECIAL = (
    (PhoneNumberType.PREMIUM_RATE, "premium_rate"),
    (PhoneNumberType.TOLL_FREE, "toll_free"),
    (PhoneNumberType.SHARED_COST, "shared_cost"),
    (PhoneNumberType.VOIP, "voip"),
    (PhoneNumberType.PERSONAL_NUMBER, "personal_number"),
    (PhoneNumberType.PAGER, "pager"),
    (PhoneNumberType.UAN, "uan"),
    (PhoneNumberType.VOICEMAIL, "voicemail"),
)


@dataclass(frozen=True, slots=True)
class _Types:
    """One region's number types as `number_type` tries them, in its order."""

    general: _Test | None
    special: tuple[tuple[int, _Test], ...]
    fixed_line: _Test | None
    mobile: _Test | None
    same_mobile_and_fixed: bool
    leading: re.Pattern[str] | None  # the region's leading digits, for a shared calling code
    # The types after `general`, by the national number's length (see `_by_length`).
    lengths: dict[int, _Combined] = field(default_factory=dict, compare=False)


# For one length, the types `_number_type_helper` tries after `general` (the special types,
# fixed line, then mobile unless it is the fixed line's pattern) whose possible lengths
# allow it, as one pattern of named alternatives in that order, and each name's type. A
# full match's alternative is the first whose pattern matches the whole number: the type
# testing them one by one finds first, in one regex call where a mobile number took ten
# (~14k instructions of a number's ~114k facts, callgrind).
_Combined = tuple[re.Pattern[str] | None, dict[str, int]]
_FIXED, _MOBILE = "fixed_line", "mobile"


def _test(desc: PhoneNumberDesc | None) -> _Test | None:
    """None where `_is_number_matching_desc` is always false (no desc, no pattern)."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = frozenset(desc.possible_length) if desc.possible_length else None
    return lengths, re.compile(desc.national_number_pattern)


def _matches(national: str, test: _Test | None) -> bool:
    if test is None:
        return False
    lengths, pattern = test
    return (lengths is None or len(national) in lengths) and pattern.fullmatch(national) is not None


@cache  # one entry per region (~250), built on first use
def _types(country_code: int, region: str) -> _Types | None:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    special = ((kind, _test(getattr(metadata, name))) for kind, name in _SPECIAL)
    return _Types(
        general=_test(metadata.general_desc),
        special=tuple((kind, test) for kind, test in special if test is not None),
        fixed_line=_test(metadata.fixed_line),
        mobile=_test(metadata.mobile),
        same_mobile_and_fixed=bool(metadata.same_mobile_and_fixed_line_pattern),
        leading=re.compile(leading) if (leading := metadata.leading_digits) is not None else None,
    )


def number_region(number: PhoneNumber) -> str | None:
    """`phonenumbers.region_code_for_number(number)`: for a calling code shared by several
    regions, the first whose leading digits or number types the number matches."""
    code = number.country_code or 0
    regions = COUNTRY_CODE_TO_REGION_CODE.get(code)
    if regions is None:
        return None
    if len(regions) == 1:
        return regions[0]
    national = national_significant_number(number)
    for region in regions:
        types = _types(code, region)
        if types is None:
            continue
        if types.leading is not None:
            if types.leading.match(national):
                return region
        elif _kind(national, types) != PhoneNumberType.UNKNOWN:
            return region
    return None


def number_kind(number: PhoneNumber, region: str | None) -> int:
    """`phonenumbers.number_type(number)` given `region_code_for_number(number)` (which it
    would look up again), each type's pattern compiled once per region."""
    types = _types(number.country_code or 0, region) if region is not None else None
    if types is None:
        return PhoneNumberType.UNKNOWN
    return _kind(national_significant_number(number), types)


def _kind(national: str, types: _Types) -> int:
    """`_number_type_helper(national, metadata)`."""
    if not _matches(national, types.general):
        return PhoneNumberType.UNKNOWN
    combined = types.lengths.get(len(national))
    if combined is None:
        combined = types.lengths[len(national)] = _by_length(types, len(national))
    pattern, kinds = combined
    found = pattern.fullmatch(national) if pattern is not None else None
    if found is None:
        return PhoneNumberType.UNKNOWN
    kind = kinds[str(found.lastgroup)]  # each alternative is a named group
    if kind == PhoneNumberType.FIXED_LINE and (
        types.same_mobile_and_fixed or _matches(national, types.mobile)
    ):
        return PhoneNumberType.FIXED_LINE_OR_MOBILE
    return kind


def _by_length(types: _Types, length: int) -> _Combined:
    tests: list[tuple[str, int, _Test | None]] = [
        (f"t{kind}", kind, test) for kind, test in types.special
    ]
    tests.append((_FIXED, PhoneNumberType.FIXED_LINE, types.fixed_line))
    if not types.same_mobile_and_fixed:
        tests.append((_MOBILE, PhoneNumberType.MOBILE, types.mobile))
    named = [
        (name, kind, test[1].pattern)
        for name, kind, test in tests
        if test is not None and (test[0] is None or length in test[0])
    ]
    if not named:
        return None, {}
    pattern = "|".join(f"(?P<{name}>{text})" for name, _, text in named)
    return re.compile(pattern), {name: kind for name, kind, _ in named}
