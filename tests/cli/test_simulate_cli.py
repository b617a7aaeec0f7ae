"""`verifyguard simulate` against a real server on the default store (SQLite): the report says
what rate the run offered, how late its events went out and the simulator's CPU per attempt,
so a reader sees whether the simulator or the server was the limit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli
from app.simulator.scenarios import generate
from tests.support import TEST_APP_KEY, TEST_APP_SECRET
from tests.support_server import served


def _simulate(base: str, *extra: str) -> str:
    args = ["simulate", "--scenario", "normal", "--rate", "20", "--duration", "2"]
    args += ["--url", base, "--key", TEST_APP_KEY, "--secret", TEST_APP_SECRET, *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_report_gives_the_offered_rate_its_lateness_and_the_simulator_cpu(
    tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "verifyguard.db")
    with served(f"sqlite+aiosqlite:///{tmp_path / 'verifyguard.db'}", tmp_path) as base:
        report = json.loads(_simulate(base, "--json").strip().splitlines()[-1])
        text = _simulate(base)
    attempts = generate("normal", duration=2, rate=20, seed=1)
    assert (report["attempts"], report["errors"]) == (len(attempts), 0)
    pace = report["pace"]
    offered = round((len(attempts) - 1) / (attempts[-1].at - attempts[0].at), 1)
    assert pace["offered_per_s"] == offered
    assert pace["connections"] == 256
    assert isinstance(pace["simulator_behind"], bool)
    for name in ("sent_per_s", "late_p99_ms", "late_max_ms", "answer_p99_ms"):
        assert pace[name] is not None, name
    assert pace["cpu_ms_per_attempt"] > 0
    assert f"offered {offered:g}/s, sent " in text
    assert "simulator CPU" in text and "ms per attempt" in text
