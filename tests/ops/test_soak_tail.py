"""`bench.soak --profile` with VERIFYGUARD_LOOP_WATCH_REQUESTS=1: each soak minute's request
events, from the server's per-callback lines (bench/loop_watch.py), put in the minute they
started in, receipts and results left out, and their stages summed for the answers at the
median and for the slowest 1 %; and the soak's per-minute count of answers over 20 ms."""

from __future__ import annotations

import json
from pathlib import Path

from bench import soak, soak_profile


def _line(at: float, total: float, count_write: float, store_write: float) -> str:
    stages = {
        "count-batches": [1.0, count_write, 0.5, 4, 1, 0],
        "store-batches": [2.0, store_write, 0.25, 4, 0, 0],
    }
    return json.dumps([at, total, 0.4, 5, 0.2, stages])


def test_the_tail_puts_request_events_in_their_minute_and_sums_their_stages(
    tmp_path: Path,
) -> None:
    lines = [_line(0.5 + i / 100, 10.0, 3.0, 4.0) for i in range(99)]
    lines.append(_line(30.0, 100.0, 40.0, 50.0))  # the slowest 1 %
    lines.append(json.dumps([31.0, 500.0, 0.3, 2, 0.1, {"outcomes": [0, 1, 0, 1, 0, 0]}]))
    lines.append(_line(70.0, 7.0, 2.0, 3.0))  # the second minute
    path = tmp_path / "watch.1.requests"
    path.write_text("\n".join(lines) + "\n")
    data = {"started_wall": 1000.0}

    first, second = soak_profile.tail(path, data, 1000.0, 2)

    assert first is not None and second is not None
    assert (first["n"], first["p50_ms"], first["p99_ms"], first["over_20ms"]) == (
        100,
        10.0,
        10.0,
        1,
    )
    slow = first["top_1pct"]
    assert (slow["n"], slow["total"], slow["count_write"], slow["store_write"]) == (
        1,
        100.0,
        40.0,
        50.0,
    )
    assert slow["rest"] == round(100.0 - (1.0 + 40.0 + 0.5 + 2.0 + 50.0 + 0.25), 2)
    assert first["median"]["count_write"] == 3.0
    assert second["n"] == 1


def test_a_minute_counts_its_answers_over_20_ms() -> None:
    minute = soak.Minute(latencies=[0.005, 0.019, 0.020, 0.021, 0.3])
    assert minute.row(0)["over_20ms"] == 2
