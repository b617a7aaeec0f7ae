"""What a backtest reports, tallied attempt by attempt: pure, no I/O.

Per attempt: what live answered (stored), what the candidate decided, and whether it verified.
`caught`: live allowed, the candidate denies, it never verified. `false_positives`: the
candidate denies, it verified. Money per currency: saved (price of caught), lost (price of
verified attempts the candidate denies).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from app.logs import mask_number
from app.rules.engine import CompiledPolicy, Decision, evaluate
from app.rules.facts import Facts
from app.rules.verdict import Verdict
from app.services.audit.view import mask_deep
from app.services.backtest.history import SUCCESSFUL
from app.store.backtests import StoredAttempt

SAMPLES_PER_KIND = 5
SAMPLE_KINDS = ("allow_to_deny", "deny_to_allow", "false_positive")


# An attempt's class, as bits: live denied it, the candidate denies it, it verified. A row of
# counts is eight integers, one per class (one increment per attempt; the totals, a
# country's or a day's, are derived from them when the result is written).
LIVE_DENY, DENY, GOOD = 4, 2, 1
CLASSES = range(8)


def document(row: Sequence[int]) -> dict[str, Any]:
    """The counts of a row of classes: the whole run's, a country's or a day's."""
    attempts = sum(row)
    live_denied = sum(row[c] for c in CLASSES if c & LIVE_DENY)
    denied = sum(row[c] for c in CLASSES if c & DENY)
    return {
        "attempts": attempts,
        "live": {"allowed": attempts - live_denied, "denied": live_denied},
        "candidate": {"allowed": attempts - denied, "denied": denied},
        "flips": {
            "allow_to_deny": sum(row[c] for c in CLASSES if c & DENY and not c & LIVE_DENY),
            "deny_to_allow": sum(row[c] for c in CLASSES if c & LIVE_DENY and not c & DENY),
        },
        "false_positives": sum(row[c] for c in CLASSES if c & DENY and c & GOOD),
        "caught": row[DENY],  # the candidate denies, live allowed, it never verified
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
    by_country: dict[str, list[int]] = field(default_factory=dict)
    by_day: dict[str, list[int]] = field(default_factory=dict)
    by_rule: dict[str, RuleCounts] = field(default_factory=dict)
    spend_saved: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    spend_lost: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    # The day of the last attempt added ([start, end) and its row): attempts come in time
    # order, so a day's key is spelled once, not per attempt.
    _day: tuple[datetime, datetime, list[int]] | None = None

    def __post_init__(self) -> None:
        for compiled in self.policy.rules:
            rule = compiled.rule
            self.by_rule[rule.name] = RuleCounts(mode=rule.mode, action=rule.action)
        self.samples = {kind: [] for kind in SAMPLE_KINDS}

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def add(self, attempt: StoredAttempt, outcome: Verdict, facts: Facts) -> None:
        """One replayed attempt, decided from `facts` (its trace is rebuilt from them only
        when the attempt is kept as a sample)."""
        live_deny = attempt.action == "deny"
        deny = outcome.action == "deny"
        good = attempt.status == SUCCESSFUL
        kind = LIVE_DENY * live_deny + DENY * deny + GOOD * good
        country = attempt.country or "unknown"
        row = self.by_country.get(country)
        if row is None:
            row = self.by_country[country] = [0] * 8
        row[kind] += 1
        day = self._day
        at = attempt.requested_at
        if day is None or not day[0] <= at < day[1]:
            day = self._day = self._new_day(at)
        day[2][kind] += 1
        if outcome.matched:
            self._rules(outcome, good=good, caught_by_live=not live_deny and not good)
        if deny:
            if not live_deny:
                self._money(attempt, saved=not good, lost=good)
                self._sample("allow_to_deny", attempt, facts)
            elif good:
                self._money(attempt, saved=False, lost=True)
            if good:
                self._sample("false_positive", attempt, facts)
        elif live_deny:
            self._sample("deny_to_allow", attempt, facts)

    def _new_day(self, at: datetime) -> tuple[datetime, datetime, list[int]]:
        start = datetime.combine(at.date(), time(0), tzinfo=at.tzinfo)
        key = start.date().isoformat()
        row = self.by_day.get(key)
        if row is None:
            row = self.by_day[key] = [0] * 8
        return start, start + timedelta(days=1), row

    def _sample(self, kind: str, attempt: StoredAttempt, facts: Facts) -> None:
        kept = self.samples[kind]
        if len(kept) < SAMPLES_PER_KIND:
            kept.append(sample(attempt, evaluate(self.policy, facts)))

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
        totals = [sum(row[c] for row in self.by_country.values()) for c in CLASSES]
        countries = sorted(self.by_country.items(), key=lambda kv: -sum(kv[1]))
        return {
            **document(totals),
            "spend_saved": _money(self.spend_saved),
            "spend_lost": _money(self.spend_lost),
            "by_rule": [{"rule": name, **asdict(c)} for name, c in self.by_rule.items()],
            "by_country": [{"country": key, **document(row)} for key, row in countries],
            "by_day": [{"day": key, **document(self.by_day[key])} for key in sorted(self.by_day)],
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
