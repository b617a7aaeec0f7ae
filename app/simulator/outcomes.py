"""What happens after an allowed attempt: the SMS receipt and the result, by label.

Real users mostly verify within a minute; pumped numbers are never answered, so their
verifications expire (the fraudster's network still reports the SMS delivered).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Label = Literal["legit", "fraud"]
EXPIRY_SECONDS = 300.0
UNREACHABLE = "Network error or number unreachable"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result Sinch reports `after` simulated seconds; `sms_result` for SMS only."""

    status: str
    reason: str | None
    after: float
    sms_result: str | None


def outcome(rng: random.Random, *, label: Label, method: str) -> Outcome:
    status, reason, after = _legit(rng) if label == "legit" else _fraud(rng)
    if method == "flashcall" and status == "SUCCESSFUL":
        after = rng.uniform(3.0, 12.0)  # intercepted by the app, no typing
    sms_result = None
    if method == "sms":
        sms_result = "Failed" if status == "ERROR" else "Successful"
    return Outcome(status=status, reason=reason, after=round(after, 3), sms_result=sms_result)


def _legit(rng: random.Random) -> tuple[str, str | None, float]:
    roll = rng.random()
    if roll < 0.86:
        return "SUCCESSFUL", None, rng.uniform(8.0, 55.0)
    if roll < 0.92:
        return "FAIL", "Expired", EXPIRY_SECONDS
    if roll < 0.96:
        return "FAIL", "Invalid code", rng.uniform(20.0, 90.0)
    return "ERROR", UNREACHABLE, rng.uniform(5.0, 30.0)


def _fraud(rng: random.Random) -> tuple[str, str | None, float]:
    roll = rng.random()
    if roll < 0.01:
        return "SUCCESSFUL", None, rng.uniform(30.0, 120.0)
    if roll < 0.93:
        return "FAIL", "Expired", EXPIRY_SECONDS
    return "ERROR", UNREACHABLE, rng.uniform(10.0, 60.0)
