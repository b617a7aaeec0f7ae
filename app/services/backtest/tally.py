"""What a backtest reports, tallied attempt by attempt: pure, no I/O.

Per attempt: what live answered (stored), what the candidate decided, and whether it verified.
`caught`: live allowed, the candidate denies, it never verified. `false_positives`: the
candidate denies, it verified. Money per currency: saved (price of caught), lost (price of
verified attempts the candidate denies).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from app.logs import mask_number
from app.rules.engine import CompiledPolicy, Decision
from app.rules.verdict import Verdict
from app.services.audit.view import mask_deep
from app.services.backtest.history import verified
from app.store.backtests import StoredAttempt

SAMPLES_PER_KIND = 5
SAMPLE_KINDS = ("allow_to_deny", "deny_to_allow", "false_positive")


@dataclass(slots=True)
class Counts:
    """Counts for the whole run, a country or a day."""

    attempts: int = 0
    live_denied: int = 0
    candidate_denied: int = 0
    allow_to_deny: int = 0
    deny_to_allow: int = 0
    false_positives: int = 0
    caught: int = 0

    def add(self, *, live_deny: bool, deny: bool, good: bool) -> None:
        self.attempts += 1
        self.live_denied += live_deny
        self.candidate_denied += deny
        self.allow_to_deny += deny and not live_deny
        self.deny_to_allow += live_deny and not deny
        self.false_positives += deny and good
        self.caught += deny and not live_deny and not good

    def document(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "live": {"allowed": self.attempts - self.live_denied, "denied": self.live_denied},
            "candidate": {
                "allowed": self.attempts - self.candidate_denied,
                "denied": self.candidate_denied,
            },
            "flips": {"allow_to_deny": self.allow_to_deny, "deny_to_allow": self.deny_to_allow},
            "false_positives": self.false_positives,
            "caught": self.caught,
        }


@dataclass(slots=True)
class RuleCounts:
    """One candidate rule: how often it matched, and its denies judged by how they ended."""

    mode: str
    action: str
    matched: int = 0
    would_deny: int = 0
    false_positives: int = 0
    caught: int = 0


@dataclass(slots=True)
class Tally:
    """Everything a backtest result holds, built one replayed attempt at a time."""

    policy: CompiledPolicy
    totals: Counts = field(default_factory=Counts)
    by_country: defaultdict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_day: defaultdict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_rule: dict[str, RuleCounts] = field(default_factory=dict)
    spend_saved: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    spend_lost: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for compiled in self.policy.rules:
            rule = compiled.rule
            self.by_rule[rule.name] = RuleCounts(mode=rule.mode, action=rule.action)
        self.samples = {kind: [] for kind in SAMPLE_KINDS}

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def add(
        self, attempt: StoredAttempt, outcome: Verdict, explain: Callable[[], Decision]
    ) -> None:
        """One replayed attempt; `explain` gives the decision with its trace, asked for only
        when the attempt is kept as a sample."""
        live_deny, deny, good = (
            attempt.action == "deny",
            outcome.action == "deny",
            verified(attempt),
        )
        flags = {"live_deny": live_deny, "deny": deny, "good": good}
        self.totals.add(**flags)
        self.by_country[attempt.country or "unknown"].add(**flags)
        self.by_day[attempt.requested_at.date().isoformat()].add(**flags)
        caught = deny and not live_deny and not good
        self._rules(outcome, good=good, caught_by_live=not live_deny and not good)
        self._money(attempt, saved=caught, lost=deny and good)
        kinds = (deny and not live_deny, live_deny and not deny, deny and good)
        for kind, happened in zip(SAMPLE_KINDS, kinds, strict=True):
            if happened and len(self.samples[kind]) < SAMPLES_PER_KIND:
                self.samples[kind].append(sample(attempt, explain()))

    def _rules(self, outcome: Verdict, *, good: bool, caught_by_live: bool) -> None:
        for name in outcome.matched:
            counts = self.by_rule.get(name)
            if counts is None:
                continue
            counts.matched += 1
            if counts.action == "deny":
                counts.would_deny += 1
                counts.false_positives += good
                counts.caught += caught_by_live

    def _money(self, attempt: StoredAttempt, *, saved: bool, lost: bool) -> None:
        if attempt.price_amount is None or not (saved or lost):
            return
        currency = (attempt.price_currency or "unknown").upper()
        target = self.spend_saved if saved else self.spend_lost
        target[currency] += attempt.price_amount

    def result(self) -> dict[str, Any]:
        return {
            **self.totals.document(),
            "spend_saved": _money(self.spend_saved),
            "spend_lost": _money(self.spend_lost),
            "by_rule": [{"rule": name, **asdict(c)} for name, c in self.by_rule.items()],
            "by_country": [
                {"country": key, **counts.document()}
                for key, counts in sorted(self.by_country.items(), key=lambda kv: -kv[1].attempts)
            ],
            "by_day": [{"day": key, **self.by_day[key].document()} for key in sorted(self.by_day)],
            "samples": self.samples,
            "skipped": [{"reason": r, "count": n} for r, n in self.skipped.most_common()],
        }


def _money(amounts: dict[str, float]) -> dict[str, float]:
    return {currency: round(amount, 6) for currency, amount in sorted(amounts.items())}


def sample(attempt: StoredAttempt, decision: Decision) -> dict[str, Any]:
    """One attempt for a person to look at: both answers and the candidate's trace."""
    document = decision.model_dump(mode="json", include={"reason", "rule", "shadow", "trace"})
    document = mask_deep(document)  # trace texts name the number too
    return {
        "verification_id": attempt.id,
        "requested_at": attempt.requested_at.isoformat(),
        "number": mask_number(attempt.number),
        "country": attempt.country,
        "method": attempt.method,
        "status": attempt.status,
        "live": {"action": attempt.action, "reason": attempt.reason, "rule": attempt.rule_name},
        "candidate": {"action": decision.action, **document},
    }
