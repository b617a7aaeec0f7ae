"""The closed loop driven by wrk (C, a few % of a core) instead of the Python load
generator (~0.3 core at these rates, taken from the server on a 2-core machine).

wrk replays pre-signed requests (bench/wrk.lua), each sent once: a 2 s warm-up, then the
measured run. Its latency is from each request's send to its answer, like the closed loop
of bench/loadgen.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import procs
from bench.payloads import write_wrk_requests

SCRIPT = Path(__file__).with_name("wrk.lua")
THREADS = 2
WARMUP_SECONDS = 2


def available() -> bool:
    return shutil.which("wrk") is not None


def closed_loop(
    pid: int,
    port: int,
    *,
    workdir: Path,
    key: str,
    secret: str,
    path: str,
    duration: float,
    connections: int,
    max_rps: float,
    seed: int,
    phase: Callable[[bool], None] = lambda started: None,
) -> dict[str, Any]:
    """One closed-loop phase against the server `pid` listens on `port`: the loadgen's row."""
    requests = workdir / f"wrk-{port}.tsv"
    warmup_count = int(max_rps * WARMUP_SECONDS * 1.2) + 100
    count = warmup_count + int(max_rps * duration * 1.1) + 100
    write_wrk_requests(requests, count, path=path, key=key, secret=secret, seed=seed)
    env = {**os.environ, "VG_WRK_REQUESTS": str(requests), "VG_WRK_THREADS": str(THREADS)}
    url = f"http://127.0.0.1:{port}{path}"

    def wrk(seconds: float, offset: int) -> subprocess.CompletedProcess[str]:
        command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
        command += ["-s", str(SCRIPT), url]
        return subprocess.run(  # noqa: S603 - wrk from PATH, our own arguments
            command, env={**env, "VG_WRK_OFFSET": str(offset)}, capture_output=True, text=True,
            check=True,
        )  # fmt: skip

    wrk(WARMUP_SECONDS, 0)
    phase(True)
    cpu, db_cpu, started = procs.cpu_seconds(pid), procs.postgres_cpu(), time.monotonic()
    redis_cpu = procs.redis_cpu()
    children = os.times()
    run = wrk(duration, warmup_count)
    wall = time.monotonic() - started
    after = os.times()
    phase(False)
    figures = _figures(run.stdout)
    elapsed = figures["duration_us"] / 1e6
    return {
        "requests": figures["requests"],
        "errors": figures["non_200"] + figures["socket_errors"],
        "allowed": figures["allowed"],
        "elapsed_s": round(elapsed, 3),
        "rps": round(figures["requests"] / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(figures["p50_us"] / 1000, 2),
        "p99_ms": round(figures["p99_us"] / 1000, 2),
        "p999_ms": round(figures["p999_us"] / 1000, 2),
        "max_ms": round(figures["max_us"] / 1000, 2),
        "reused_requests": figures["reused_requests"],
        "server_cpu": round((procs.cpu_seconds(pid) - cpu) / wall, 2),
        "postgres_cpu": round(procs.cpu_used(db_cpu, procs.postgres_cpu()) / wall, 2),
        "redis_cpu": round(procs.cpu_used(redis_cpu, procs.redis_cpu()) / wall, 2),
        "driver_cpu": round((_children_cpu(after) - _children_cpu(children)) / wall, 2),
        "offered_rps": None,
        "driver": "wrk",
    }


def _children_cpu(times: os.times_result) -> float:
    return times.children_user + times.children_system


def _figures(output: str) -> dict[str, int]:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            figures: dict[str, int] = json.loads(line)
            return figures
    raise RuntimeError(f"wrk printed no figures:\n{output}")
