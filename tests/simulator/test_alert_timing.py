"""Which attack an alert belongs to, and how long after the attack's start it arrived."""

from __future__ import annotations

from app.simulator.alert_timing import alert_timing, covers, render_alerts
from app.simulator.outcomes import Outcome
from app.simulator.scenarios import Attempt
from app.simulator.webhooks import Notice

EXPIRED = Outcome("FAIL", "Expired", 300.0, "Successful")


def _attempt(at: float, number: str, scenario: str, label: str = "fraud") -> Attempt:
    return Attempt(at, scenario, label, number, "sms", 0.3, EXPIRED)  # type: ignore[arg-type]


def _notice(kind: str, key: str, value: str, at: float) -> Notice:
    return Notice(type=kind, alert="a", key=key, value=value, arrived_s=at)


def test_keys_cover_numbers_as_the_evaluator_groups_them() -> None:
    assert covers(_notice("alert.firing", "range", "+37190018", 0), "+37190018123")
    assert not covers(_notice("alert.firing", "range", "+37190018", 0), "+37190019123")
    assert covers(_notice("alert.firing", "country", "GB", 0), "+447912345678")
    assert not covers(_notice("alert.firing", "country", "GB", 0), "+46701234567")
    assert covers(_notice("alert.firing", "number", "+46701234567", 0), "+46701234567")
    assert covers(_notice("alert.firing", "global", "global", 0), "+46701234567")


def test_each_attack_gets_its_first_alert_and_containment_and_strays_are_false_alarms() -> None:
    attempts = [
        _attempt(5.0, "+37190018001", "range-pumping"),
        _attempt(6.0, "+37190018002", "range-pumping"),
        _attempt(20.0, "+96170123456", "number-abuse"),
        _attempt(1.0, "+447912345678", "normal", "legit"),
        _attempt(11.0, "+37190018999", "normal", "legit"),  # inside the contained range
        _attempt(12.0, "+37190019000", "normal", "legit"),  # outside it
    ]
    notices = [
        _notice("alert.firing", "range", "+37190018", 10.0),
        _notice("containment.created", "range", "+37190018", 10.0),
        _notice("alert.firing", "range", "+37190018", 50.0),  # a later one does not count
        _notice("alert.firing", "number", "+96170123456", 19.0),  # before that number was used
        _notice("alert.firing", "country", "GB", 30.0),  # only real users there
    ]
    document = alert_timing(attempts, notices, rejected=1)
    assert document["received"] == 5 and document["rejected"] == 1 and document["firing"] == 4
    assert document["by_attack"]["range-pumping"] == {
        "started_at_s": 5.0,
        "first_alert_after_s": 5.0,
        "first_alert": "a range +37190018 at 10.0 s",
        "first_containment_after_s": 5.0,
        "first_containment": "a range +37190018 at 10.0 s",
        "first_proposal_after_s": None,
        "after_containment": 0,
        "inside_containment": 0,
    }
    assert document["by_attack"]["number-abuse"]["first_alert_after_s"] is None
    assert document["false_alarms"] == [
        "a number +96170123456 at 19.0 s",
        "a country GB at 30.0 s",
    ]
    assert document["legit_in_containments"] == 1


def test_proposed_is_told_apart_from_in_force_and_later_attempts_are_checked() -> None:
    """A proposed containment blocks nothing: it is reported on its own, and only attempts
    inside a containment in force (created, not yet expired) count as contained."""
    attempts = [
        _attempt(1.0, "+6777100001", "slow-pumping"),
        _attempt(20.0, "+6777100002", "slow-pumping"),  # inside SB's containment
        _attempt(40.0, "+6777100003", "slow-pumping"),  # after it expired
        _attempt(2.0, "+2348031234567", "distributed-pumping"),
        _attempt(30.0, "+2348031234568", "distributed-pumping"),
        _attempt(31.0, "+2348039999999", "normal", "legit"),  # NG only proposed: not blocked
    ]
    notices = [
        _notice("alert.firing", "country", "SB", 5.0),
        _notice("containment.created", "country", "SB", 5.0),
        _notice("containment.expired", "country", "SB", 35.0),
        _notice("alert.firing", "country", "NG", 10.0),
        _notice("containment.proposed", "country", "NG", 10.0),
    ]
    document = alert_timing(attempts, notices)
    slow = document["by_attack"]["slow-pumping"]
    assert (slow["first_containment_after_s"], slow["first_proposal_after_s"]) == (4.0, None)
    assert (slow["after_containment"], slow["inside_containment"]) == (2, 1)
    spread = document["by_attack"]["distributed-pumping"]
    assert (spread["first_containment_after_s"], spread["first_proposal_after_s"]) == (None, 8.0)
    assert (spread["after_containment"], spread["inside_containment"]) == (0, 0)
    assert document["legit_in_containments"] == 0
    assert any("first proposed 8 s" in line for line in render_alerts(document))


def test_a_proposal_is_in_force_once_approved_or_activated() -> None:
    attempts = [_attempt(t, f"+99270123{int(t):04d}", "slow-pumping") for t in (1, 10, 40, 60)]
    for kind in ("containment.approved", "containment.activated"):
        notices = [
            _notice("alert.firing", "country", "TJ", 5.0),
            _notice("containment.proposed", "country", "TJ", 5.0),
            _notice(kind, "country", "TJ", 35.0),
        ]
        attack = alert_timing(attempts, notices)["by_attack"]["slow-pumping"]
        assert attack["first_proposal_after_s"] == 4.0
        assert attack["first_containment_after_s"] == 34.0
        assert (attack["after_containment"], attack["inside_containment"]) == (2, 2)
