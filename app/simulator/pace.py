"""Whether a run offered what it was asked: each request event's lateness (sent after its
scheduled time: the simulator's own lag), its answer time from that schedule, and the
simulator's CPU per attempt — so a report shows when the simulator, not the server, was
the limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TypedDict

BEHIND_S = 0.1  # p99 lateness past this: the simulator could not keep to its schedule


class PaceDoc(TypedDict):
    """The run's pace in the JSON report."""

    offered_per_s: float | None
    sent_per_s: float | None
    late_p50_ms: float | None
    late_p99_ms: float | None
    late_max_ms: float | None
    answer_p50_ms: float | None
    answer_p99_ms: float | None
    answer_max_ms: float | None
    connections: int | None
    waited_for_connection: int
    cpu_ms_per_attempt: float | None
    simulator_behind: bool


@dataclass(slots=True)
class Pace:
    """Filled as the run goes: times are `time.monotonic()`; `due` is a request event's
    scheduled moment."""

    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=time.process_time)
    first_due: float | None = None
    last_due: float = 0.0
    last_sent: float = 0.0
    late: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)

    def sent(self, due: float, now: float) -> None:
        if self.first_due is None:
            self.first_due = due
        self.last_due, self.last_sent = due, now
        self.late.append(max(0.0, now - due))

    def answer(self, due: float, now: float) -> None:
        self.answered.append(now - due)

    def summary(self, *, connections: int | None = None, waited: int = 0) -> PaceDoc:
        attempts = len(self.late)
        cpu = time.process_time() - self.cpu_started
        late, answered = sorted(self.late), sorted(self.answered)
        first = self.first_due if self.first_due is not None else self.started
        return {
            "offered_per_s": _rate(attempts - 1, self.last_due - first),
            "sent_per_s": _rate(attempts - 1, self.last_sent - first),
            "late_p50_ms": _ms(late, 0.5),
            "late_p99_ms": _ms(late, 0.99),
            "late_max_ms": _ms(late, 1.0),
            "answer_p50_ms": _ms(answered, 0.5),
            "answer_p99_ms": _ms(answered, 0.99),
            "answer_max_ms": _ms(answered, 1.0),
            "connections": connections,
            "waited_for_connection": waited,
            "cpu_ms_per_attempt": round(1000 * cpu / attempts, 3) if attempts else None,
            "simulator_behind": bool(late) and late[int(0.99 * (len(late) - 1))] > BEHIND_S,
        }


def render_pace(pace: PaceDoc) -> list[str]:
    """The pace as lines for people: what was offered, and who limited it."""
    lines = [
        f"offered {_num(pace['offered_per_s'])}/s, sent {_num(pace['sent_per_s'])}/s; "
        f"sent late p50 {_num(pace['late_p50_ms'])} ms, p99 {_num(pace['late_p99_ms'])} ms, "
        f"max {_num(pace['late_max_ms'])} ms; answered after p50 "
        f"{_num(pace['answer_p50_ms'])} ms, p99 {_num(pace['answer_p99_ms'])} ms; "
        f"simulator CPU {_num(pace['cpu_ms_per_attempt'])} ms per attempt"
    ]
    if pace["simulator_behind"]:
        lines.append(
            "the simulator fell behind its schedule (its own CPU): it, not the server, "
            "limited the rate offered"
        )
    if pace["waited_for_connection"]:
        lines.append(
            f"{pace['waited_for_connection']} events waited for one of the "
            f"{pace['connections']} connections: the server answered slower than they carry"
        )
    return lines


def _rate(intervals: int, span: float) -> float | None:
    return round(intervals / span, 1) if intervals > 0 and span > 0 else None


def _ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(1000 * ordered[round(q * (len(ordered) - 1))], 1)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"
