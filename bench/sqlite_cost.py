"""`python -m bench.sqlite_cost`: what one request event costs on SQLite (the default store).

One uvicorn worker on a fresh SQLite file with a verified history (bench/history.py, as
`make bench` starts each phase); --warm request events, then --count more in a closed loop
of --connections, measured. The deadline (--deadline-ms) is long enough that admission
sheds nothing on a loaded machine: every answer is decided, and the figures are the cost of
a decision. Per request event: statements the server sent (SQLAlchemy's cursor executions,
BEGIN included; an executemany is one) and the rows they carried; per 1,000, CPU seconds
of the server process (from /proc: load-independent where wall-clock rates are not); per
request event, the server's read system calls (a page SQLite's cache missed is one; socket
reads too); the fallback answers and the group commit's mean batch. Rounds repeat the
measured phase on the same server. --history-rows first seeds that many verifications of
an attack's hour three hours back (bench/rollup_hold.py `seed`): the file an attack leaves
behind, whose indexes no longer fit SQLite's page cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from app.store import stats_rollup
from app.store.migrate import upgrade
from bench import history, procs, rollup_hold
from bench.callback_cost import _get, _send_all
from bench.payloads import legit_request_events
from bench.run import CALLBACK_PATH, KEY, ROOT, SECRET, verifyguard

COUNTS: Counter[str] = Counter()


def counted_app() -> Any:
    """The app, with every statement it sends counted (a uvicorn factory for this bench)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from starlette.responses import JSONResponse

    from app.main import create_app

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        many = bool(rest and rest[-1])
        COUNTS["statements"] += 1
        COUNTS["executemany"] += many
        COUNTS["rows"] += len(parameters) if many else 1

    event.listen(Engine, "before_cursor_execute", before)
    app = create_app()

    async def counts(request: Any) -> JSONResponse:
        return JSONResponse(dict(COUNTS))

    app.add_route("/_bench/counts", counts)
    return app


def _metrics(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = {"fallbacks": 0.0, "batch_sum": 0.0, "batch_count": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name == "verifyguard_fallback_answers" and sample.name.endswith("_total"):
                found["fallbacks"] += sample.value
            elif sample.name == "verifyguard_decision_batch_size_sum":
                found["batch_sum"] += sample.value
            elif sample.name == "verifyguard_decision_batch_size_count":
                found["batch_count"] += sample.value
    return found


async def _phase(port: int, pid: int, events: list[dict[str, Any]], conns: int) -> dict[str, Any]:
    counts0, metrics0 = await _get(port, "/_bench/counts"), _metrics(port)
    cpu0, reads0, started = procs.cpu_seconds(pid), procs.read_calls(pid), time.perf_counter()
    failures = await _send_all(port, events, conns)
    seconds, cpu1, reads1 = (
        time.perf_counter() - started,
        procs.cpu_seconds(pid),
        procs.read_calls(pid),
    )
    counts1, metrics1 = await _get(port, "/_bench/counts"), _metrics(port)
    per, n = 1000 / len(events), len(events)
    delta = {k: metrics1[k] - metrics0[k] for k in metrics1}
    batches = delta["batch_count"]
    return {
        "requests": n,
        "failures": failures,
        "per_second": round(n / seconds),
        "server_cpu_s_per_1000": round((cpu1 - cpu0) * per, 3),
        "statements_per_decision": round((counts1["statements"] - counts0["statements"]) / n, 2),
        "rows_per_decision": round((counts1["rows"] - counts0["rows"]) / n, 2),
        "read_calls_per_decision": round((reads1 - reads0) / n, 1),
        "fallbacks": int(delta["fallbacks"]),
        "mean_batch": round(delta["batch_sum"] / batches, 1) if batches else None,
        "load": os.getloadavg()[0],
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(17)  # noqa: S311 - load shape, not secrets
    with tempfile.TemporaryDirectory(prefix="vg-sqlite-cost-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        if args.history_rows:
            _seed(Path(tmp) / "bench.db", args.history_rows)
        target = verifyguard(url, "sqlite")
        with procs.uvicorn_server(
            "bench.sqlite_cost:counted_app",
            port=args.port,
            env={**target.env, "VERIFYGUARD_DECISION_DEADLINE_MS": str(args.deadline_ms)},
            log=Path(tmp) / "server.log",
            cwd=Path(tmp),
            app_dir=args.app_dir,
        ) as server:
            history.seed_verified(args.port, key=KEY, secret=SECRET, path=CALLBACK_PATH)
            asyncio.run(
                _send_all(args.port, legit_request_events(rng, args.warm), args.connections)
            )
            return [
                asyncio.run(
                    _phase(
                        args.port,
                        server.pid,
                        legit_request_events(rng, args.count),
                        args.connections,
                    )
                )
                for _ in range(args.rounds)
            ]


def _seed(path: Path, rows: int) -> None:
    """`rows` of an attack's hour three hours back, as bench/rollup_hold.py seeds them
    (less its probe table), then ANALYZE."""
    hour = stats_rollup.floor_hour(datetime.now(UTC)) - 3 * rollup_hold.HOUR
    rollup_hold.seed(path, rows, hour)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE bench_probe")
    db.commit()
    db.execute("ANALYZE")
    db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=procs.free_port())
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--deadline-ms", type=int, default=5000, help="long: admission sheds nothing, all decided"
    )
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to serve")
    parser.add_argument(
        "--history-rows", type=int, default=0, help="verifications seeded first (an attack's hour)"
    )
    args = parser.parse_args(argv)
    for row in run(args):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
