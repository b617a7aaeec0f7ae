"""Which attack an alert belongs to, and how long after the attack's start it arrived."""

from __future__ import annotations

from app.simulator.alert_timing import alert_timing, covers
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
    }
    assert document["by_attack"]["number-abuse"]["first_alert_after_s"] is None
    assert document["false_alarms"] == [
        "a number +96170123456 at 19.0 s",
        "a country GB at 30.0 s",
    ]
    assert document["legit_in_containments"] == 1
