"""`make bench`'s closed loops in rounds: each VerifyGuard closed loop is compared with the
baseline of its own round (the machine's speed drifts between rounds), A B then B A."""

from __future__ import annotations

from typing import Any

from bench.render import render
from bench.run import in_rounds


def _closed(target: str, rps: float, p99: float, round_: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": target,
        "offered_rps": None,
        "rps": rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "p999_ms": p99,
        "requests": int(rps * 12),
        "allowed": int(rps * 12),
        "errors": 0,
        "server_cpu": 0.8,
        "postgres_cpu": 0.5,
        "redis_cpu": 0.0,
        "driver": "wrk",
    }
    if round_ is not None:
        row["round"] = round_
    return row


def _ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    return [line for line in render(rows).splitlines() if "/ baseline:" in line]


def test_rounds_alternate_their_order() -> None:
    order = in_rounds(["baseline", "postgres", "sqlite"], 3)

    assert order == [
        (1, "baseline"),
        (1, "postgres"),
        (1, "sqlite"),
        (2, "sqlite"),
        (2, "postgres"),
        (2, "baseline"),
        (3, "baseline"),
        (3, "postgres"),
        (3, "sqlite"),
    ]
    assert in_rounds(["baseline"], 0) == []


def test_each_round_is_compared_with_its_own_baseline() -> None:
    # The machine slowed down by half between the rounds: against one baseline, the
    # second round would read 0.30x; against its own, it reads 0.60x, as the first did.
    rows = [
        _closed("baseline (postgres)", 5000, 40, 1),
        _closed("verifyguard (postgres)", 3000, 40, 1),
        _closed("verifyguard (postgres)", 1500, 80, 2),
        _closed("baseline (postgres)", 2500, 50, 2),
        _closed("verifyguard (postgres)", 2200, 60, 3),
        _closed("baseline (postgres)", 4000, 40, 3),
    ]

    [line] = _ratio_lines(rows)

    assert line == (
        "verifyguard (postgres) / baseline: 0.60x, 0.60x, 0.55x (median 0.60x) the "
        "throughput, 1.0x, 1.6x, 1.5x (median 1.5x) the p99 (closed loop, each round "
        "against its own baseline)"
    )
    table = render(rows)
    assert "closed 2, wrk" in table
    assert "closed 3, wrk" in table


def test_a_single_round_reads_as_before() -> None:
    rows = [
        _closed("baseline (postgres)", 4000, 40, None),
        _closed("verifyguard (sqlite)", 1000, 60, None),
    ]

    assert _ratio_lines(rows) == [
        "verifyguard (sqlite) / baseline: 0.25x the throughput, 1.5x the p99 (closed loop)"
    ]
    assert "closed, wrk" in render(rows)


def test_the_recovery_line_says_which_fallbacks_came_after_the_first_second() -> None:
    row = _closed("verifyguard (postgres)", 1900, 300, None) | {
        "offered_rps": 4000,
        "fallbacks": 20000,
        "max_ms": 390,
        "within_deadline": 1.0,
        "connections_opened": 1024,
        "connection_cap": 1024,
        "connections_busiest": 1000,
        "waited_for_connection": 0,
        "by_window": {
            "start": {"fallbacks": 20000, "server_answers": 40000, "server_within_deadline": 40000},
            "drop": {"fallbacks": 290, "server_answers": 1000, "server_within_deadline": 1000},
            "settled": {"fallbacks": 7, "server_answers": 5000, "server_within_deadline": 5000},
        },
        "after_drop": {"offered_rps": 1000},
        "settled": {"p50_ms": 15, "p99_ms": 40, "max_ms": 60, "within_deadline": 1.0},
        "recovered_after_s": 0,
    }

    [line] = [line for line in render([row]).splitlines() if line.startswith("  then")]

    assert line.startswith("  then 1000 req/s: 297 fallbacks (7 after its first second); ")
