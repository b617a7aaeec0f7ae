"""`python -m bench.backtest_latency`: request-event latency at a fixed offered rate, without
and then with a backtest running in the same deployment (one uvicorn worker, which starts
the backtest's child process), on a PostgreSQL database holding stored history (fill it with
`python -m bench.audit.generate`).

    .venv/bin/python -m bench.backtest_latency --url postgresql://postgres@127.0.0.1:5432/vg_audit_bench
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from app.rules.starter import starter_policy
from app.services.policy.io import export_document
from bench import procs
from bench.run import KEY, ROOT, SECRET, Fallbacks, _drive


def phase(url: str, workdir: Path, args: argparse.Namespace, *, backtest: bool) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    env = {
        "VERIFYGUARD_DATABASE_URL": url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({KEY: SECRET}),
        "VERIFYGUARD_ENVIRONMENT": "production",
        "VERIFYGUARD_BOOTSTRAP_TOKEN": token,
    }
    port = procs.free_port()
    log = workdir / f"server-{'backtest' if backtest else 'alone'}.log"
    with procs.uvicorn_server(
        "app.main:create_app", port=port, env=env, log=log, cwd=workdir, app_dir=ROOT
    ) as server:
        started: dict[str, Any] | None = None
        if backtest:
            since = datetime.now(UTC) - timedelta(days=args.days)
            body = {"policy": export_document(starter_policy()), "since": since.isoformat()}
            answer = httpx.post(
                f"http://127.0.0.1:{port}/admin/backtest",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            answer.raise_for_status()
            started = answer.json()
        fallbacks = Fallbacks(port)
        result = _drive(server.pid, port, rate=args.rate, args=args, fallbacks=fallbacks)
        result["fallbacks"] = fallbacks.counted
        result["load"] = [round(x, 2) for x in os.getloadavg()]
        if started is not None:
            progress = httpx.get(
                f"http://127.0.0.1:{port}/admin/backtest/{started['id']}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ).json()
            result["backtest"] = {"status": progress["status"], "progress": progress["progress"]}
            if progress["status"] == "running":
                httpx.delete(
                    f"http://127.0.0.1:{port}/admin/backtest/{started['id']}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/vg_audit_bench")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--days", type=float, default=30.0, help="history the backtest replays")
    parser.add_argument("--fixed-duration", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-rps", type=float, default=4000.0)
    args = parser.parse_args(argv)
    url = args.url.replace("postgresql://", "postgresql+asyncpg://", 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vg-bt-bench-") as tmp:
        for backtest in (False, True):
            print(f"… {'with' if backtest else 'without'} a backtest", file=sys.stderr, flush=True)
            result = phase(url, Path(tmp), args, backtest=backtest)
            rows.append({"backtest_running": backtest, **result})
    keys = ("backtest_running", "offered_rps", "rps", "p50_ms", "p99_ms", "p999_ms")
    keys += ("fallbacks", "server_cpu", "backtest", "load")
    for row in rows:
        print(json.dumps({key: row.get(key) for key in keys}))


if __name__ == "__main__":
    main()
