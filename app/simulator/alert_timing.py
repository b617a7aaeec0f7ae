"""When the alerts came: per attack scenario, how long after its first attempt the first
`alert.firing`, the first containment in force (created, approved or activated) and the first
`containment.proposed` (waiting for an admin) naming one of its keys arrived, and how many of
its later attempts fell inside a containment in force; every firing that named no attacked
key (on legit traffic: a false alarm); and how many real users' attempts fell inside a
containment in force (each one a user blocked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TypedDict

import phonenumbers

from app.simulator.scenarios import Attempt
from app.simulator.webhooks import Notice

FIRING = "alert.firing"
# In force: created so, approved by an admin, or activated once its key was judged dead.
IN_FORCE = ("containment.created", "containment.approved", "containment.activated")
PROPOSED = "containment.proposed"
ENDED = ("containment.lifted", "containment.expired")


class AttackAlertsDoc(TypedDict):
    started_at_s: float
    first_alert_after_s: float | None
    first_alert: str | None
    first_containment_after_s: float | None
    first_containment: str | None
    first_proposal_after_s: float | None
    after_containment: int  # its attempts after its first containment arrived
    inside_containment: int  # of those, how many one in force covered


class AlertsDoc(TypedDict):
    """The `alerts` object of the JSON report."""

    received: int
    rejected: int
    firing: int
    by_attack: dict[str, AttackAlertsDoc]
    false_alarms: list[str]
    legit_in_containments: int


@lru_cache(maxsize=100_000)
def country_of(number: str) -> str | None:
    return phonenumbers.region_code_for_number(phonenumbers.parse(number, None))


def covers(notice: Notice, number: str) -> bool:
    """Whether the key a notification names covers `number`."""
    if notice.key == "number":
        return number == notice.value
    if notice.key == "range":
        return number.startswith(notice.value)
    if notice.key == "country":
        return country_of(number) == notice.value
    return True  # global, application: the simulator plays one application


def alert_timing(
    attempts: Sequence[Attempt], notices: Sequence[Notice], *, rejected: int = 0
) -> AlertsDoc:
    by_scenario: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        if attempt.label == "fraud":
            by_scenario.setdefault(attempt.scenario, []).append(attempt)
    firings = [n for n in notices if n.type == FIRING]
    attacked = [n for n in firings if any(_hits(n, items) for items in by_scenario.values())]
    return {
        "received": len(notices),
        "rejected": rejected,
        "firing": len(firings),
        "by_attack": {name: _attack(items, notices) for name, items in sorted(by_scenario.items())},
        "false_alarms": [_name(n) for n in firings if n not in attacked],
        "legit_in_containments": _legit_contained(attempts, notices),
    }


def _legit_contained(attempts: Sequence[Attempt], notices: Sequence[Notice]) -> int:
    contained = _contained(notices)
    return sum(1 for a in attempts if a.label == "legit" and contained(a))


def _contained(notices: Sequence[Notice]) -> Callable[[Attempt], bool]:
    """Whether an attempt fell inside a containment in force: created before it, and not
    lifted or expired (as notified) by then."""
    ends = [n for n in notices if n.type in ENDED]
    spans = [
        (
            n,
            min(
                (e.arrived_s for e in ends if _same(e, n) and e.arrived_s >= n.arrived_s),
                default=float("inf"),
            ),
        )
        for n in notices
        if n.type in IN_FORCE
    ]

    def inside(attempt: Attempt) -> bool:
        return any(
            start.arrived_s <= attempt.at < end and covers(start, attempt.number)
            for start, end in spans
        )

    return inside


def _same(one: Notice, other: Notice) -> bool:
    return (one.key, one.value) == (other.key, other.value)


def _attack(items: list[Attempt], notices: Sequence[Notice]) -> AttackAlertsDoc:
    started = min(a.at for a in items)
    mine = [n for n in notices if n.arrived_s >= started and _hits(n, items)]
    alert = _first(mine, lambda n: n.type == FIRING)
    contained = _first(mine, lambda n: n.type in IN_FORCE)
    proposed = _first(mine, lambda n: n.type == PROPOSED)
    later = [a for a in items if contained is not None and a.at >= contained.arrived_s]
    inside = _contained(notices)
    return {
        "started_at_s": round(started, 2),
        "first_alert_after_s": _after(alert, started),
        "first_alert": _name(alert) if alert else None,
        "first_containment_after_s": _after(contained, started),
        "first_containment": _name(contained) if contained else None,
        "first_proposal_after_s": _after(proposed, started),
        "after_containment": len(later),
        "inside_containment": sum(1 for a in later if inside(a)),
    }


def _hits(notice: Notice, items: list[Attempt]) -> bool:
    """The notice names a key this attack used before the notice arrived."""
    return any(a.at <= notice.arrived_s and covers(notice, a.number) for a in items)


def _first(notices: list[Notice], wanted: Callable[[Notice], bool]) -> Notice | None:
    return min((n for n in notices if wanted(n)), key=lambda n: n.arrived_s, default=None)


def _after(notice: Notice | None, started: float) -> float | None:
    return None if notice is None else round(notice.arrived_s - started, 1)


def _name(notice: Notice) -> str:
    return f"{notice.alert} {notice.key} {notice.value} at {notice.arrived_s:.1f} s"


def render_alerts(document: AlertsDoc) -> list[str]:
    """The report's lines about alerts."""
    lines = [
        f"webhooks: {document['received']} received (signature verified), "
        f"{document['rejected']} rejected, {document['firing']} alert.firing"
    ]
    for name, timing in document["by_attack"].items():
        lines.append(
            f"{name}: first alert.firing {_seconds(timing['first_alert_after_s'])}"
            f" ({timing['first_alert'] or 'none'}), first containment in force "
            f"{_seconds(timing['first_containment_after_s'])}"
            f" ({timing['first_containment'] or 'none'}), first proposed "
            f"{_seconds(timing['first_proposal_after_s'])} after its start; "
            f"{timing['inside_containment']} of its {timing['after_containment']} later "
            "attempts inside a containment in force"
        )
    lines += [f"false alarm: {alarm}" for alarm in document["false_alarms"]]
    lines.append(f"legit attempts inside a containment: {document['legit_in_containments']}")
    return lines


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:g} s"
