"""The vocabulary every counter backend shares: measures, windows, buckets, money in micros.

A window of W seconds covers the ceil(W / bucket) most recent buckets, the current one
included. Spend is kept in integer micros of the currency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Measure = Literal["attempts", "allowed", "spend", "allowed_spend", "successes"]
COLUMNS: dict[str, str] = {
    "attempts": "attempts",
    "allowed": "allowed",
    "spend": "spend_micros",
    "allowed_spend": "allowed_spend_micros",
    "successes": "successes",
}
# Attempts still being decided count as allowed until settled.
PENDING = {"allowed": "pending", "allowed_spend_micros": "pending_spend_micros"}
MICROS = 1_000_000
VALUE_COLUMNS = (
    "attempts",
    "allowed",
    "pending",
    "spend_micros",
    "allowed_spend_micros",
    "pending_spend_micros",
    "successes",
)


@dataclass(frozen=True, slots=True)
class WindowQuery:
    key: str
    window_seconds: int
    measure: Measure


def to_micros(amount: float | None) -> int:
    return round(amount * MICROS) if amount else 0


class BucketClock:
    def __init__(self, bucket_seconds: int) -> None:
        self.size = bucket_seconds

    def bucket(self, moment: datetime) -> int:
        epoch = int(moment.timestamp())
        return epoch - epoch % self.size

    def oldest(self, now: datetime, window_seconds: int) -> int:
        buckets = max(1, math.ceil(window_seconds / self.size))
        return self.bucket(now) - (buckets - 1) * self.size


@dataclass(frozen=True, slots=True)
class CounterDeltas:
    """Deltas to add to the counters of some keys in one bucket (e.g. settling an attempt)."""

    keys: tuple[str, ...]
    bucket: int
    deltas: Mapping[str, int]


def pending_deltas(spend_micros: int) -> dict[str, int]:
    """What holding an attempt pending (until decided) adds to a key."""
    return {"pending": 1, "pending_spend_micros": spend_micros}


def settle_deltas(spend_micros: int, *, allowed: bool) -> dict[str, int]:
    """What settling a held attempt adds to a key: no longer pending; allowed if it was."""
    won = 1 if allowed else 0
    return {
        "pending": -1,
        "pending_spend_micros": -spend_micros,
        "allowed": won,
        "allowed_spend_micros": spend_micros * won,
    }
