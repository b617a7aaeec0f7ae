"""Labelled attempt streams: ordinary sign-ups and three kinds of pumping, reproducible by seed.

`at` is real seconds after the start (the guard's velocity windows see real time); only the
wait for a result is simulated time, compressed by the runner.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from app.simulator import catalog
from app.simulator.outcomes import Label, Outcome, outcome

SCENARIOS = (
    "normal",
    "bunched",
    "surge",
    "range-pumping",
    "number-abuse",
    "slow-pumping",
    "distributed-pumping",
    "mixed",
)
LEGIT_SCENARIOS = frozenset({"normal", "bunched", "surge"})
ATTACKS = ("range-pumping", "number-abuse", "slow-pumping", "distributed-pumping")
MIXED = ("bunched", "surge", *ATTACKS)
METHOD_PRICE = {"sms": 1.0, "flashcall": 0.6, "callout": 1.5, "whatsapp": 0.8}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One verification attempt Sinch will ask about, with its label and its fate."""

    at: float
    scenario: str
    label: Label
    number: str
    method: str
    price: float
    outcome: Outcome
    currency: str = "EUR"


Stream = Callable[[random.Random, float, float], list[Attempt]]


def generate(scenario: str, *, duration: float, rate: float, seed: int) -> list[Attempt]:
    """Every attempt of `scenario`, sorted by time. Each attack runs over normal traffic."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    names = ["normal", *(MIXED if scenario == "mixed" else [scenario])]
    attempts: list[Attempt] = []
    for name in dict.fromkeys(names):
        rng = random.Random(f"{seed}:{name}")  # noqa: S311 - reproducible, not secret
        attempts.extend(STREAMS[name](rng, duration, rate))
    return sorted(attempts, key=lambda a: (a.at, a.number))


def _attempt(
    rng: random.Random, scenario: str, at: float, number: str, method: str, base_price: float
) -> Attempt:
    """One attempt of `scenario`: normal traffic is legit, every attack is fraud."""
    label: Label = "legit" if scenario in LEGIT_SCENARIOS else "fraud"
    return Attempt(
        at=round(at, 4),
        scenario=scenario,
        label=label,
        number=number,
        method=method,
        price=round(base_price * METHOD_PRICE[method], 4),
        outcome=outcome(rng, label=label, method=method),
    )


def _poisson(rng: random.Random, rate: float, duration: float, start: float = 0.0) -> list[float]:
    times, t = [], start + rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def normal(rng: random.Random, duration: float, rate: float) -> list[Attempt]:
    """Sign-ups from 15 countries; a user whose code did not work may try once more."""
    attempts: list[Attempt] = []
    for at in _poisson(rng, rate, duration):
        span = catalog.pick(rng, catalog.LEGIT)
        attempts += _sign_up(rng, "normal", at, span, span.number(rng), duration)
    return attempts


def _sign_up(
    rng: random.Random, scenario: str, at: float, span: catalog.Range, number: str, end: float
) -> list[Attempt]:
    """A real user's attempt, and the retry of half of those whose code did not work."""
    method = rng.choices(list(METHOD_PRICE), weights=[85, 7, 5, 3])[0]
    first = _attempt(rng, scenario, at, number, method, span.price)
    retry_at = at + rng.uniform(5.0, 20.0)
    if first.outcome.status != "SUCCESSFUL" and rng.random() < 0.5 and retry_at < end:
        return [first, _attempt(rng, scenario, retry_at, number, "sms", span.price)]
    return [first]


def bunched(rng: random.Random, duration: float, rate: float) -> list[Attempt]:
    """Real sign-ups concentrated in five operator blocks of 1,000 numbers (a new SIM batch,
    a company rolling the app out to its staff): 300 to 900 an hour in each, verifying as
    real users do (~86 %)."""
    attempts: list[Attempt] = []
    for _ in range(5):
        span = catalog.pick(rng, catalog.LEGIT)
        base = span.number(rng)
        for at in _poisson(rng, rng.uniform(300, 900) / 3600, duration):
            attempts += _sign_up(rng, "bunched", at, span, span.in_block(rng, base), duration)
    return attempts


def surge(rng: random.Random, duration: float, rate: float) -> list[Attempt]:
    """A marketing push: ten times the normal rate of one country (nine more on top of its
    normal traffic) for five minutes (or 40 % of a shorter run) from 30 % of the run on."""
    span = catalog.pick(rng, catalog.LEGIT)
    ranges = [r for r in catalog.LEGIT if r.country == span.country]
    share = sum(r.weight for r in ranges) / sum(r.weight for r in catalog.LEGIT)
    start = 0.3 * duration
    end = min(duration, start + min(300.0, 0.4 * duration))
    attempts: list[Attempt] = []
    for at in _poisson(rng, 9 * rate * share, end, start=start):
        chosen = catalog.pick(rng, tuple(ranges))
        attempts += _sign_up(rng, "surge", at, chosen, chosen.number(rng), duration)
    return attempts


def range_pumping(rng: random.Random, duration: float, rate: float) -> list[Attempt]:
    """Bursts of consecutive numbers, rotating over one premium-rate block and two
    high-cost mobile blocks; each block is walked onwards from burst to burst."""
    targets = [catalog.pick(rng, catalog.PUMPED_PREMIUM), *rng.sample(catalog.PUMPED_MOBILE, 2)]
    size = max(10, round(3 * rate))
    starts = [t for t in range(3, int(duration), 12) if t < duration]
    blocks = [span.block(rng, size * (len(starts) // 3 + 1)) for span in targets]
    attempts: list[Attempt] = []
    for k, start in enumerate(starts):
        span, block = targets[k % 3], blocks[k % 3]
        numbers = block[(k // 3) * size : (k // 3 + 1) * size]
        spread = rng.uniform(2.0, 4.0)
        for i, number in enumerate(numbers):
            at = start + spread * i / len(numbers) + rng.uniform(0.0, 0.05)
            if at < duration:
                method = rng.choices(["sms", "callout"], weights=[80, 20])[0]
                attempts.append(_attempt(rng, "range-pumping", at, number, method, span.price))
    return attempts


def number_abuse(rng: random.Random, duration: float, rate: float) -> list[Attempt]:
    """One number asked for code after code, all run long (SMS bombing or a paid line)."""
    span = catalog.pick(rng, catalog.HAMMERED)
    number = span.number(rng)
    return [
        _attempt(rng, "number-abuse", at, number, "sms", span.price)
        for at in _poisson(rng, max(0.2, rate / 10), duration)
    ]


def slow_pumping(rng: random.Random, duration: float, rate: float) -> list[Attempt]:
    """Random numbers of one small country at a trickle: no number or block repeats enough
    to trip a velocity rule; only its conversion (nobody ever verifies) gives it away."""
    span = catalog.pick(rng, catalog.SMALL_COUNTRIES)
    return [
        _attempt(rng, "slow-pumping", at, span.number(rng), "sms", span.price)
        for at in _poisson(rng, max(1 / 30, rate / 50), duration)
    ]


def distributed_pumping(rng: random.Random, duration: float, rate: float) -> list[Attempt]:
    """Pumping spread over the blocks of one country: random numbers at `max(1, rate / 10)`
    per second, so that no 1,000-number block gets more than a few an hour (under any
    per-block limit); almost none verify."""
    span = catalog.pick(rng, catalog.DISTRIBUTED)
    return [
        _attempt(rng, "distributed-pumping", at, span.number(rng), "sms", span.price)
        for at in _poisson(rng, max(1.0, rate / 10), duration)
    ]


STREAMS: dict[str, Stream] = {
    "normal": normal,
    "bunched": bunched,
    "surge": surge,
    "distributed-pumping": distributed_pumping,
    "range-pumping": range_pumping,
    "number-abuse": number_abuse,
    "slow-pumping": slow_pumping,
}
