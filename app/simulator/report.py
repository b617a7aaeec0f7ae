"""The simulator's arithmetic: counts per label and per scenario, the live progress line, and
the final report as text or as one JSON object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from app.simulator.pace import PaceDoc, render_pace
from app.simulator.scenarios import Attempt


class CountsDoc(TypedDict):
    """One label's or scenario's counts in the JSON report."""

    attempts: int
    allowed: int
    denied: int
    errors: int
    spend_allowed: float
    spend_no_guard: float
    denied_pct: float | None


class ReportDoc(TypedDict):
    """The JSON report; its key names are part of the CLI's contract."""

    scenario: str
    seed: int
    duration_s: float
    rate: float
    elapsed_s: float
    attempts: int
    allowed: int
    denied: int
    errors: int
    fraud_denied_pct: float | None
    legit_denied_pct: float | None
    currency: str
    fraud_spend_allowed: float
    fraud_spend_no_guard: float
    fraud_spend_saved: float
    followups_sent: int
    followup_errors: int
    by_label: dict[str, CountsDoc]
    by_scenario: dict[str, CountsDoc]
    pace: NotRequired[PaceDoc]  # real-time runs only


@dataclass(slots=True)
class Counts:
    """Attempts and what the guard answered; `errors` got no usable answer at all."""

    attempts: int = 0
    allowed: int = 0
    denied: int = 0
    errors: int = 0
    spend_allowed: float = 0.0
    spend_no_guard: float = 0.0

    def add(self, action: str | None, price: float) -> None:
        self.attempts += 1
        self.spend_no_guard += price
        if action == "allow":
            self.allowed += 1
            self.spend_allowed += price
        elif action == "deny":
            self.denied += 1
        else:
            self.errors += 1

    @property
    def denied_pct(self) -> float | None:
        """Denied share of the answered attempts, in percent; None when none were answered."""
        answered = self.allowed + self.denied
        return round(100 * self.denied / answered, 2) if answered else None

    def as_dict(self) -> CountsDoc:
        return {
            "attempts": self.attempts,
            "allowed": self.allowed,
            "denied": self.denied,
            "errors": self.errors,
            "spend_allowed": round(self.spend_allowed, 4),
            "spend_no_guard": round(self.spend_no_guard, 4),
            "denied_pct": self.denied_pct,
        }


@dataclass(slots=True)
class Tally:
    """Everything counted during one run."""

    total: Counts = field(default_factory=Counts)
    by_label: dict[str, Counts] = field(default_factory=dict)
    by_scenario: dict[str, Counts] = field(default_factory=dict)
    followups_sent: int = 0
    followup_errors: int = 0

    def record(self, attempt: Attempt, action: str | None) -> None:
        for counts in (
            self.total,
            self.by_label.setdefault(attempt.label, Counts()),
            self.by_scenario.setdefault(attempt.scenario, Counts()),
        ):
            counts.add(action, attempt.price)

    def label(self, name: str) -> Counts:
        return self.by_label.get(name, Counts())


@dataclass(frozen=True, slots=True)
class RunInfo:
    scenario: str
    seed: int
    duration: float
    rate: float
    elapsed: float
    currency: str = "EUR"


def report(tally: Tally, info: RunInfo) -> ReportDoc:
    """The report as one JSON-able object; the key names are part of the CLI's contract."""
    fraud, legit = tally.label("fraud"), tally.label("legit")
    return {
        "scenario": info.scenario,
        "seed": info.seed,
        "duration_s": info.duration,
        "rate": info.rate,
        "elapsed_s": round(info.elapsed, 2),
        "attempts": tally.total.attempts,
        "allowed": tally.total.allowed,
        "denied": tally.total.denied,
        "errors": tally.total.errors,
        "fraud_denied_pct": fraud.denied_pct,
        "legit_denied_pct": legit.denied_pct,
        "currency": info.currency,
        "fraud_spend_allowed": round(fraud.spend_allowed, 4),
        "fraud_spend_no_guard": round(fraud.spend_no_guard, 4),
        "fraud_spend_saved": round(fraud.spend_no_guard - fraud.spend_allowed, 4),
        "followups_sent": tally.followups_sent,
        "followup_errors": tally.followup_errors,
        "by_label": {name: c.as_dict() for name, c in sorted(tally.by_label.items())},
        "by_scenario": {name: c.as_dict() for name, c in sorted(tally.by_scenario.items())},
    }


def progress_line(tally: Tally, elapsed: float) -> str:
    total = tally.total
    rate = total.attempts / elapsed if elapsed > 0 else 0.0
    return (
        f"{elapsed:6.1f}s  {total.attempts:6d} attempts  {rate:6.1f}/s  "
        f"allowed {total.allowed:6d}  denied {total.denied:6d}  errors {total.errors}"
    )


_HEADER = f"{'':16}{'attempts':>9}{'allowed':>9}{'denied':>8}{'errors':>8}{'denied%':>9}"


def render(document: ReportDoc) -> str:
    """The report as a short table for people."""
    currency = document["currency"]
    lines = [
        f"scenario {document['scenario']}  seed {document['seed']}  "
        f"{document['duration_s']:g} s at {document['rate']:g}/s  "
        f"(ran {document['elapsed_s']:.1f} s)",
        _HEADER + f"{'spend allowed':>15}{'no guard':>11}",
    ]
    for group in (document["by_label"], document["by_scenario"]):
        lines += [_row(name, counts) for name, counts in group.items()]
    lines += [
        f"fraud denied {_pct(document['fraud_denied_pct'])}   "
        f"legit denied {_pct(document['legit_denied_pct'])}",
        f"fraud spend allowed {document['fraud_spend_allowed']:.2f} {currency} "
        f"of {document['fraud_spend_no_guard']:.2f} {currency} with no guard "
        f"(saved {document['fraud_spend_saved']:.2f} {currency})",
    ]
    if document["errors"] or document["followup_errors"]:
        lines.append(
            f"errors: {document['errors']} request events, "
            f"{document['followup_errors']} receipts/results got no 2xx"
        )
    if "pace" in document:
        lines += render_pace(document["pace"])
    return "\n".join(lines)


def _row(name: str, c: CountsDoc) -> str:
    return (
        f"{name:16}{c['attempts']:>9}{c['allowed']:>9}{c['denied']:>8}{c['errors']:>8}"
        f"{_pct(c['denied_pct']):>9}{c['spend_allowed']:>15.2f}{c['spend_no_guard']:>11.2f}"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"
