"""When each attack was stopped: the targets are about attempts after an attack's first
minute, and about how long slow pumping got through (from the answers, in time order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from app.simulator.scenarios import Attempt

FIRST_MINUTE = 60.0


class AttackDoc(TypedDict):
    """One fraud scenario's timing in the JSON report."""

    started_at_s: float
    after_first_minute: int
    denied_after_first_minute_pct: float | None
    last_allowed_after_s: float | None


def attacks(answers: Sequence[tuple[Attempt, str | None]]) -> dict[str, AttackDoc]:
    """Per fraud scenario: its start, the share of its attempts denied after its first
    minute, and how long after its start its last attempt was allowed (None: never)."""
    by_scenario: dict[str, list[tuple[Attempt, str | None]]] = {}
    for attempt, action in answers:
        if attempt.label == "fraud":
            by_scenario.setdefault(attempt.scenario, []).append((attempt, action))
    return {name: _timing(items) for name, items in sorted(by_scenario.items())}


def _timing(items: list[tuple[Attempt, str | None]]) -> AttackDoc:
    started = min(attempt.at for attempt, _ in items)
    later = [action for attempt, action in items if attempt.at >= started + FIRST_MINUTE]
    denied = sum(1 for action in later if action != "allow")
    allowed = [attempt.at - started for attempt, action in items if action == "allow"]
    return {
        "started_at_s": round(started, 2),
        "after_first_minute": len(later),
        "denied_after_first_minute_pct": round(100 * denied / len(later), 2) if later else None,
        "last_allowed_after_s": round(max(allowed), 1) if allowed else None,
    }
