"""The bench table: one row per target and load, the machine it ran on, and the ratios."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any

COLUMNS = (
    ("target", 34, "target"),
    ("load", 18, "load"),
    ("rps", 9, "req/s"),
    ("p50_ms", 9, "p50 ms"),
    ("p99_ms", 9, "p99 ms"),
    ("p999_ms", 10, "p99.9 ms"),
    ("denied", 8, "denied"),
    ("deny_share", 7, "deny"),
    ("errors", 7, "errors"),
    ("fallback_share", 10, "fallback"),
    ("server_cpu", 11, "app CPU"),
    ("cpu_per_request", 13, "app ms/req"),
    ("postgres_cpu", 9, "pg CPU"),
    ("redis_cpu", 10, "redis CPU"),
)


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()}"
    )


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        machine(),
        "".join(
            f"{title:>{width}}" if i else f"{title:<{width}}"
            for i, (_, width, title) in enumerate(COLUMNS)
        ),
    ]
    for row in rows:
        load = f"{row['offered_rps']:g} req/s" if row["offered_rps"] else _closed(row)
        denied = row["requests"] - row["allowed"]
        cells = {**row, "load": load, "denied": denied}
        if row["requests"]:
            cells["deny_share"] = f"{100 * denied / row['requests']:.0f}%"
        if row.get("fallbacks") is not None and _answered(row):
            cells["fallback_share"] = f"{100 * row['fallbacks'] / _answered(row):.1f}%"
        if row.get("rps"):  # CPU time per answer: the figure that does not depend on the load
            cells["cpu_per_request"] = round(1000 * row["server_cpu"] / row["rps"], 2)
        lines.append(
            "".join(_cell(cells.get(key), width, i) for i, (key, width, _) in enumerate(COLUMNS))
        )
    lines += _ratios(rows)
    lines += _with_without(rows)
    lines += [_console(row) for row in rows if row.get("console")]
    lines += [_overload(row) for row in rows if row.get("connection_cap")]
    lines.append("load: closed loop = 64 connections, as fast as answered (driver, its CPU);")
    lines.append("      the last VerifyGuard row of each store offers twice its closed-loop")
    lines.append("      req/s (--overload-factor) as Sinch does (each request at its time, on a")
    lines.append("      free connection or a new one: bench/scheduled.py), latency from the")
    lines.append("      scheduled send; then half the closed-loop req/s: see the overload lines")
    lines.append("fallback: answers that were the fallback (shed, late or failed), of all answered")
    seeded = [row["seeded"] for row in rows if row.get("seeded")]
    if seeded:
        shares = ", ".join(f"{s['allowed']}/{s['sent']}" for s in seeded)
        lines.append(
            "history: each VerifyGuard phase first sent verified sign-ups through the callback "
            f"(allowed and verified: {shares})"
        )
    return "\n".join(lines)


def driver(row: dict[str, Any]) -> str:
    """Which load generator drove a closed-loop row, and its CPU (cores) when known."""
    name = str(row.get("driver", "python"))
    cpu = row.get("driver_cpu")
    return f"{name} {cpu:g}" if cpu is not None else name


def _answered(row: dict[str, Any]) -> int:
    """What the fallbacks are a share of: the answers the server gave while they were
    counted (the overload window's, from its metrics: past capacity, the answers to the
    requests sent in the window come later), else the answers the load generator got."""
    server = row.get("by_window", {}).get("start", {}).get("server_answers")
    return int(server or row["requests"])


def _overload(row: dict[str, Any]) -> str:
    """The over-capacity phase as Sinch sees it, and what followed the drop in load."""
    share = f"{100 * row['fallbacks'] / _answered(row):.1f}%" if _answered(row) else "-"
    text = (
        f"overload, {row['target']}: offered {row['offered_rps']:g} req/s, answered "
        f"{row['rps']:g} req/s within the window, fallback {share}; from the scheduled send "
        f"p50 {row['p50_ms']} p99 {row['p99_ms']} max {row['max_ms']} ms, "
        f"{_pct(row['within_deadline'])} within the deadline; connections opened "
        f"{row['connections_opened']} (cap {row['connection_cap']}, busiest "
        f"{row['connections_busiest']}), requests that waited for one "
        f"{row['waited_for_connection']}"
    )
    if row.get("unsent_p50_ms") is not None:  # the generator's own part (bench/scheduled.py)
        text += (
            f"; the load generator ({row['driver_cpu']:g} CPU) wrote requests late by p50 "
            f"{row['unsent_p50_ms']} p99 {row['unsent_p99_ms']} ms, "
            f"{_pct(row['within_deadline_from_write'])} within the deadline from the write"
        )
    if row.get("lag_p50_ms") is not None:  # late to its schedule, before any connection wait
        text += (
            f"; its own lag in dispatching them p50 {row['lag_p50_ms']} p99 "
            f"{row['lag_p99_ms']} ms (the rest of the lateness: waiting for a connection)"
        )
    windows = row.get("by_window", {})
    server = windows.get("start", {})
    if server.get("server_answers"):
        share = server["server_within_deadline"] / server["server_answers"]
        text += f"; the server's own timing (from receipt): {_pct(share)} within the deadline"
    after, settled = row.get("after_drop"), row.get("settled")
    if after and settled:
        later = windows.get("settled", {}).get("fallbacks") or 0
        fallbacks = (windows.get("drop", {}).get("fallbacks") or 0) + later
        text += (
            f"\n  then {after['offered_rps']:g} req/s: {fallbacks} fallbacks ({later} after its "
            f"first second); from 1 s after the "
            f"drop p50 {settled['p50_ms']} p99 {settled['p99_ms']} max {settled['max_ms']} ms, "
            f"{_pct(settled['within_deadline'])} within the deadline; the last answer past it "
            f"was sent {row['recovered_after_s']:g} s after the drop"
        )
    return text


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _console(row: dict[str, Any]) -> str:
    """What the open console got during a phase: polls answered, their p50 and max."""
    seen = row["console"]
    load = f"{row['offered_rps']:g} req/s" if row["offered_rps"] else "closed loop"
    kinds = [
        f"{kind} {v['requests']}x p50 {v['p50_ms']:g} max {v['max_ms']:g} ms"
        for kind, v in seen.items()
        if isinstance(v, dict)
    ]
    return f"console during {row['target']}, {load}: {'; '.join(kinds)}; failed {seen['failed']}"


_COMPARED = (
    ("rps", "req/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("fallback_pct", "fallback %"),
    ("deny_pct", "deny %"),
    ("ms_per_request", "app ms/req"),
)


def _with_without(rows: list[dict[str, Any]]) -> list[str]:
    """With --console: per target and load, the mean of the phases without and with a
    console (each phase on a fresh database, in A B B A order), side by side."""
    groups: dict[tuple[str, float | None], dict[bool, list[dict[str, float]]]] = {}
    for row in rows:
        name = str(row["target"])
        plain = name.removesuffix(" + console")
        key = (plain, row["offered_rps"])
        groups.setdefault(key, {False: [], True: []})[name != plain].append(_figures(row))
    lines = []
    for (name, rate), sides in groups.items():
        if not sides[True] or not sides[False]:
            continue
        load = f"{rate:g} req/s" if rate else "closed loop"
        cells = []
        for key, title in _COMPARED:
            without, with_ = (_mean(sides[side], key) for side in (False, True))
            cells.append(f"{title} {without:.4g} -> {with_:.4g}")
        n = (len(sides[False]), len(sides[True]))
        lines.append(
            f"{name}, {load}, without -> with a console (means of {n[0]}/{n[1]}): "
            + ", ".join(cells)
        )
    return lines


def _figures(row: dict[str, Any]) -> dict[str, float]:
    requests = row["requests"] or 1
    return {
        "rps": row["rps"],
        "p50_ms": row["p50_ms"],
        "p99_ms": row["p99_ms"],
        "fallback_pct": 100 * (row.get("fallbacks") or 0) / requests,
        "deny_pct": 100 * (row["requests"] - row["allowed"]) / requests,
        "ms_per_request": 1000 * row["server_cpu"] / row["rps"] if row.get("rps") else 0.0,
    }


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def _cell(value: Any, width: int, index: int) -> str:
    text = "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text:<{width}}" if index == 0 else f"{text:>{width}}"


def _closed(row: dict[str, Any]) -> str:
    """A closed-loop row's load cell: its round (when there are several) and its driver."""
    return f"closed {row['round']}, {driver(row)}" if row.get("round") else f"closed, {driver(row)}"


def _ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Each VerifyGuard closed loop against the baseline of its own round (bench.run
    `--rounds`: the machine's speed drifts between rounds), and the median over rounds."""
    rounds: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if not row["offered_rps"]:
            rounds.setdefault(row.get("round") or 1, {})[row["target"]] = row
    pairs: dict[str, list[tuple[float, float | None]]] = {}
    for closed in rounds.values():
        base = closed.get("baseline (postgres)")
        if base is None or not base["rps"]:
            continue
        for name, row in closed.items():
            if row is not base:
                p99 = row["p99_ms"] / base["p99_ms"] if row["p99_ms"] and base["p99_ms"] else None
                pairs.setdefault(name, []).append((row["rps"] / base["rps"], p99))
    lines = []
    for name, found in pairs.items():
        throughput = ", ".join(f"{t:.2f}x" for t, _ in found)
        p99s = [p for _, p in found if p is not None]
        p99 = ", ".join(f"{p:.1f}x" for p in p99s) or "n/a"
        if len(found) > 1:
            throughput += f" (median {statistics.median(t for t, _ in found):.2f}x)"
            p99 += f" (median {statistics.median(p99s):.1f}x)" if p99s else ""
        lines.append(
            f"{name} / baseline: {throughput} the throughput, {p99} the p99 (closed loop"
            + (", each round against its own baseline)" if len(found) > 1 else ")")
        )
    return lines
