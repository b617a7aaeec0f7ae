"""A run's pace: lateness and answer times counted from each event's schedule, and the
report's verdict on who limited the rate (the simulator's own lag, or the server)."""

from __future__ import annotations

from app.simulator.pace import BEHIND_S, Pace, render_pace


def _pace(lateness: list[float]) -> Pace:
    """Ten events a second from t=100, each sent `lateness` late and answered 20 ms later."""
    pace = Pace(started=100.0)
    for i, late in enumerate(lateness):
        due = 100.0 + i / 10
        pace.sent(due, due + late)
        pace.answer(due, due + late + 0.02)
    return pace


def test_a_run_on_schedule_reports_the_rate_it_offered_and_sent() -> None:
    summary = _pace([0.001] * 101).summary(connections=8, waited=0)
    assert (summary["offered_per_s"], summary["sent_per_s"]) == (10.0, 10.0)
    assert (summary["late_p99_ms"], summary["answer_p50_ms"]) == (1.0, 21.0)
    assert summary["simulator_behind"] is False
    lines = render_pace(summary)
    assert lines[0].startswith("offered 10/s, sent 10/s; sent late p50 1 ms")
    assert len(lines) == 1


def test_a_simulator_behind_its_schedule_is_named_as_the_limit() -> None:
    lateness = [i * BEHIND_S / 10 for i in range(101)]  # falls further behind at each event
    summary = _pace(lateness).summary(connections=8, waited=3)
    assert summary["simulator_behind"] is True
    assert summary["sent_per_s"] is not None and summary["sent_per_s"] < 10.0
    lines = render_pace(summary)
    assert "it, not the server, limited the rate offered" in lines[1]
    assert lines[2].startswith("3 events waited for one of the 8 connections")


def test_an_empty_run_has_no_rates() -> None:
    summary = Pace().summary()
    assert summary["offered_per_s"] is None and summary["late_p99_ms"] is None
    assert summary["simulator_behind"] is False
