"""The report's arithmetic: counts, denied shares and spend, per label and per scenario."""

from __future__ import annotations

import json

from app.simulator.outcomes import Outcome
from app.simulator.report import Counts, RunInfo, Tally, progress_line, render, report
from app.simulator.scenarios import Attempt

EXPIRED = Outcome("FAIL", "Expired", 300.0, "Successful")


def _attempt(label: str, scenario: str, price: float) -> Attempt:
    return Attempt(0.0, scenario, label, "+46701234567", "sms", price, EXPIRED)  # type: ignore[arg-type]


def _tally() -> Tally:
    tally = Tally()
    for action in ["allow"] * 98 + ["deny"] * 2:
        tally.record(_attempt("legit", "normal", 0.05), action)
    for action in ["allow"] * 3 + ["deny"] * 9:
        tally.record(_attempt("fraud", "range-pumping", 0.25), action)
    unanswered: list[str | None] = ["deny", None]
    for answer in unanswered:
        tally.record(_attempt("fraud", "number-abuse", 0.10), answer)
    return tally


def test_counts_split_answers_and_spend() -> None:
    counts = Counts()
    counts.add("allow", 0.5)
    counts.add("deny", 0.25)
    counts.add(None, 1.0)
    assert (counts.attempts, counts.allowed, counts.denied, counts.errors) == (3, 1, 1, 1)
    assert counts.spend_allowed == 0.5
    assert counts.spend_no_guard == 1.75
    assert counts.denied_pct == 50.0


def test_denied_share_is_none_without_answers() -> None:
    assert Counts().denied_pct is None
    counts = Counts()
    counts.add(None, 1.0)
    assert counts.denied_pct is None


def test_report_per_label_and_per_scenario() -> None:
    document = report(_tally(), RunInfo("mixed", 1, 60, 10, 61.5))
    assert (document["attempts"], document["allowed"], document["denied"]) == (114, 101, 12)
    assert document["errors"] == 1
    assert document["legit_denied_pct"] == 2.0
    assert document["fraud_denied_pct"] == round(100 * 10 / 13, 2)
    assert document["fraud_spend_allowed"] == 0.75
    assert document["fraud_spend_no_guard"] == 3.2
    assert document["fraud_spend_saved"] == 2.45
    assert document["by_scenario"]["range-pumping"]["denied"] == 9
    assert document["by_scenario"]["number-abuse"]["errors"] == 1
    assert document["by_label"]["legit"]["attempts"] == 100
    assert json.loads(json.dumps(document)) == document


def test_report_without_fraud_has_no_fraud_share() -> None:
    tally = Tally()
    tally.record(_attempt("legit", "normal", 0.05), "allow")
    document = report(tally, RunInfo("normal", 1, 1, 1, 1.0))
    assert document["fraud_denied_pct"] is None
    assert document["legit_denied_pct"] == 0.0
    assert "fraud denied n/a" in render(document)


def test_rendered_report_names_every_group() -> None:
    text = render(report(_tally(), RunInfo("mixed", 1, 60, 10, 61.5)))
    for name in ("legit", "fraud", "normal", "range-pumping", "number-abuse"):
        assert f"\n{name} " in text
    assert "fraud denied 76.9%" in text
    assert "saved 2.45 EUR" in text


def test_progress_line_shows_rate_and_answers() -> None:
    line = progress_line(_tally(), 10.0)
    assert "114 attempts" in line
    assert "11.4/s" in line
    assert "allowed    101" in line
