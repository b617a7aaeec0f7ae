"""Alert evaluation as a pure function: observations and the last state in, transitions out.

A key fires when its observation breaches the threshold, unless it fired within the
cooldown; a firing key resolves once it has stayed within the threshold for a full window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from app.rules.alerts import Alert


@dataclass(frozen=True, slots=True)
class Observation:
    """One key's metric over the window, the attempts it is taken over, and (relative
    thresholds) its average over the same hour of the previous days."""

    observed: float
    attempts: int
    baseline: float | None = None


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one key of one alert stands."""

    value: str
    firing: bool
    last_fired_at: datetime | None = None
    below_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Literal["alert.firing", "alert.resolved"]
    value: str
    observed: float
    threshold: float | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one evaluation changes: the transitions and every key's new state."""

    transitions: list[Transition]
    states: dict[str, AlertState]


NOTHING = Observation(0.0, 0)


def threshold(alert: Alert, observation: Observation) -> float | None:
    """The limit for this key now; None when a relative-only alert has no history yet."""
    if alert.metric == "conversion":
        return alert.below
    relative = None
    if alert.relative is not None and observation.baseline:
        relative = alert.relative.factor * observation.baseline
    candidates = [t for t in (alert.above, relative) if t is not None]
    return max(candidates) if candidates else None


def breached(alert: Alert, observation: Observation) -> bool:
    limit = threshold(alert, observation)
    if limit is None or observation.attempts < max(alert.min_attempts, 1):
        return False
    if alert.metric == "conversion":
        return observation.observed < limit
    return observation.observed > limit


def evaluate_alert(
    alert: Alert,
    observations: Mapping[str, Observation],
    states: Mapping[str, AlertState],
    now: datetime,
) -> Outcome:
    """Transitions for every key observed or known to be firing."""
    transitions: list[Transition] = []
    new: dict[str, AlertState] = {}
    for value in sorted(set(observations) | {v for v, s in states.items() if s.firing}):
        observation = observations.get(value, NOTHING)
        state = states.get(value, AlertState(value=value, firing=False))
        step, moved = _step(alert, state, observation, now)
        if moved is not None:
            transitions.append(moved)
        if step != state:
            new[value] = step
    return Outcome(transitions, new)


def _step(
    alert: Alert, state: AlertState, observation: Observation, now: datetime
) -> tuple[AlertState, Transition | None]:
    limit = threshold(alert, observation)
    if breached(alert, observation):
        if state.firing:
            return replace(state, below_since=None), None
        cooldown = timedelta(seconds=alert.cooldown_seconds)
        if state.last_fired_at is not None and now - state.last_fired_at < cooldown:
            return state, None
        fired = AlertState(value=state.value, firing=True, last_fired_at=now)
        return fired, Transition("alert.firing", state.value, observation.observed, limit)
    if not state.firing:
        return state, None
    if state.below_since is None:
        return replace(state, below_since=now), None
    if now - state.below_since < timedelta(seconds=alert.window_seconds):
        return state, None
    resolved = replace(state, firing=False, below_since=None)
    return resolved, Transition("alert.resolved", state.value, observation.observed, limit)
