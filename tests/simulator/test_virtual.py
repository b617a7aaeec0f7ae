"""The virtual clock: a scenario played through the real runtime in this process."""

from __future__ import annotations

from pathlib import Path

from app.simulator.scenarios import generate
from app.simulator.timing import attacks
from app.simulator.virtual import play_virtual


async def test_slow_pumping_is_stopped_and_real_users_are_not(tmp_path: Path) -> None:
    attempts = generate("slow-pumping", duration=240, rate=1, seed=3)
    played = await play_virtual(attempts, database_url=f"sqlite+aiosqlite:///{tmp_path}/v.db")
    legit, fraud = played.tally.label("legit"), played.tally.label("fraud")
    assert legit.attempts > 150 and fraud.attempts >= 5
    assert legit.denied == 0 and legit.errors == 0 and fraud.errors == 0
    timing = attacks(played.answers)["slow-pumping"]
    assert timing["denied_after_first_minute_pct"] == 100.0
    # A small, expensive country nobody verifies is judged from its first attempt: one
    # attempt is what a costly new destination gets before one verifies, nothing after.
    assert fraud.allowed == 1
    assert timing["last_allowed_after_s"] is not None and timing["last_allowed_after_s"] < 60
    # Results and receipts of every allowed attempt were delivered, on the virtual clock.
    assert played.tally.followups_sent > legit.allowed
    assert played.tally.followup_errors == 0
