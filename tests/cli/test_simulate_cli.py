"""`verifyguard simulate` against a real server on the default store (SQLite): the report says
what rate the run offered, how late its events went out and the simulator's CPU per attempt,
so a reader sees whether the simulator or the server was the limit."""

from __future__ import annotations

import gc
import json
import shutil
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli
from app.gc_settings import SERVER_THRESHOLDS
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


def test_the_simulator_plays_with_the_servers_collector_settings(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """With the collector's defaults a `range-pumping --rate 300` run paused in full
    collections of up to 165 ms, sending the events due meanwhile in clumps (the server
    answered some of them with the fallback). While it plays, what it built before is frozen
    and young collections are rarer (the server's settings); afterwards both are as before."""
    shutil.copy(sqlite_template, tmp_path / "verifyguard.db")
    before = gc.get_threshold()
    seen: set[tuple[tuple[int, int, int], bool]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add((gc.get_threshold(), gc.get_freeze_count() > 0))
            time.sleep(0.001)

    with served(f"sqlite+aiosqlite:///{tmp_path / 'verifyguard.db'}", tmp_path) as base:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            _simulate(base)
        finally:
            stop.set()
            watcher.join()
    assert (SERVER_THRESHOLDS, True) in seen, seen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
