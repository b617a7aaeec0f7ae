"""Phone number ranges the simulator dials: real ranges valid for libphonenumber, with the
approximate price (EUR) Sinch quotes for a verification there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers


@dataclass(frozen=True, slots=True)
class Range:
    """Numbers starting with `prefix` (E.164 digits, no '+'), `length` digits in all."""

    country: str
    prefix: str
    length: int
    price: float
    weight: float = 1.0

    def number(self, rng: random.Random) -> str:
        """A random number of this range that libphonenumber accepts as valid."""
        for _ in range(50):
            tail = "".join(rng.choice("0123456789") for _ in range(self.length - len(self.prefix)))
            candidate = f"+{self.prefix}{tail}"
            if is_valid(candidate):
                return candidate
        raise ValueError(f"no valid number found in range +{self.prefix}")

    def in_block(self, rng: random.Random, base: str, drop_last: int = 3) -> str:
        """A random valid number sharing all but the last `drop_last` digits with `base`."""
        stem = base[:-drop_last]
        for _ in range(50):
            candidate = stem + "".join(rng.choice("0123456789") for _ in range(drop_last))
            if is_valid(candidate):
                return candidate
        return base

    def block(self, rng: random.Random, size: int) -> list[str]:
        """`size` consecutive valid numbers, starting at a random point of the range."""
        start = int(self.number(rng)[1:])
        numbers: list[str] = []
        value = start
        while len(numbers) < size and value < start + 10 * size:
            candidate = f"+{value}"
            if is_valid(candidate):
                numbers.append(candidate)
            value += 1
        return numbers


@lru_cache(maxsize=200_000)
def is_valid(number: str) -> bool:
    return bool(phonenumbers.is_valid_number(phonenumbers.parse(number, None)))


# Where ordinary sign-ups come from: mobile ranges in 15 countries, weighted by traffic.
LEGIT: tuple[Range, ...] = (
    Range("US", "1201", 11, 0.0085, 6),
    Range("US", "1212", 11, 0.0085, 5),
    Range("US", "1415", 11, 0.0085, 4),
    Range("US", "1305", 11, 0.0085, 3),
    Range("GB", "4479", 12, 0.0350, 6),
    Range("DE", "4915", 13, 0.0750, 3),
    Range("DE", "4917", 13, 0.0750, 3),
    Range("FR", "336", 11, 0.0650, 5),
    Range("SE", "4670", 11, 0.0450, 3),
    Range("IN", "919", 12, 0.0040, 8),
    Range("BR", "55119", 13, 0.0300, 6),
    Range("ES", "346", 11, 0.0600, 4),
    Range("IT", "393", 12, 0.0650, 4),
    Range("NL", "3162", 11, 0.0800, 1),
    Range("NL", "3165", 11, 0.0800, 1),
    Range("MX", "5255", 12, 0.0250, 4),
    Range("AU", "614", 11, 0.0400, 3),
    Range("JP", "8190", 12, 0.0700, 3),
    Range("PL", "4860", 11, 0.0300, 3),
    Range("NG", "234803", 13, 0.1700, 2),
)

# Ranges pumped in bursts: premium-rate numbers (the payout is the call or SMS itself) and
# mobile blocks of high-cost destinations sold on by complicit carriers (IPRN).
PUMPED_PREMIUM: tuple[Range, ...] = (
    Range("GB", "44909", 12, 0.0350),
    Range("LV", "371900", 11, 0.0600),
)
PUMPED_MOBILE: tuple[Range, ...] = (
    Range("UZ", "99890", 12, 0.2400),
    Range("TJ", "99290", 12, 0.3200),
    Range("AZ", "99450", 12, 0.2700),
    Range("SL", "23276", 11, 0.2200),
    Range("001", "8816", 13, 1.1000),  # Iridium satellite: rare for real users, very costly
)

# Countries pumped across many of their blocks at once, a few attempts per block: costly
# mobile destinations, and two cheaper ones (no price rule gives those away).
DISTRIBUTED: tuple[Range, ...] = (
    Range("UZ", "99890", 12, 0.2400),
    Range("TJ", "99290", 12, 0.3200),
    Range("AZ", "99450", 12, 0.2700),
    Range("PH", "63917", 12, 0.1800),
    Range("EG", "2010", 12, 0.1200),
)

# A single number hammered: an ordinary-looking mobile, so only volume gives it away.
HAMMERED: tuple[Range, ...] = (
    Range("LB", "96170", 11, 0.1900),
    Range("NG", "234803", 13, 0.1700),
    Range("GB", "4479", 12, 0.0350),
)

# Small countries with few real users of a typical service, pumped slowly at random.
SMALL_COUNTRIES: tuple[Range, ...] = (
    Range("SB", "6777", 10, 0.3800),
    Range("FJ", "6797", 10, 0.2300),
    Range("MV", "9607", 10, 0.2000),
    Range("LR", "23177", 12, 0.2200),
    Range("MR", "22236", 11, 0.2500),
)


def pick(rng: random.Random, ranges: tuple[Range, ...]) -> Range:
    """One range, chosen by weight."""
    return rng.choices(ranges, weights=[r.weight for r in ranges])[0]


def price_for(number: str, *, default: float = 0.05) -> float:
    """The quoted price for a number: its longest matching known range, else `default`."""
    digits = number.lstrip("+")
    ranges = LEGIT + PUMPED_PREMIUM + PUMPED_MOBILE + HAMMERED + SMALL_COUNTRIES + DISTRIBUTED
    matches = [r for r in ranges if digits.startswith(r.prefix)]
    return max(matches, key=lambda r: len(r.prefix)).price if matches else default
