"""The backtest's process runs at idle CPU priority from its start: the launcher lowers the
child it spawns by its pid (before the child's interpreter has imported anything), not only
the child itself once its imports are done."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.services.backtest.worker import lower_priority


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_another_process_is_lowered_to_idle_by_its_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.sched_getscheduler(child.pid) != os.SCHED_IDLE
        lower_priority(child.pid)
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # this process is left alone
    finally:
        child.kill()
        child.wait()
