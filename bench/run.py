"""`python -m bench.run`: VerifyGuard (one worker, starter policy) on a fresh PostgreSQL
database and on SQLite, against the bare baseline, driven by the same load generator in its
own process; prints throughput, latency percentiles, CPU and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from app.store.migrate import upgrade
from bench import procs, wrk
from bench.render import render

ROOT = Path(__file__).resolve().parents[1]
KEY = "0b0c7a54-bench-4c1e-9d2f-5c7a1e000001"
CALLBACK_PATH = "/sinch/verification/events"
SECRET = base64.b64encode(secrets.token_bytes(32)).decode()  # a throwaway app per run


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    factory: str
    env: dict[str, str]
    database: str


def verifyguard(url: str, database: str) -> Target:
    env = {
        "VERIFYGUARD_DATABASE_URL": url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({KEY: SECRET}),
        "VERIFYGUARD_ENVIRONMENT": "production",
    }
    return Target(f"verifyguard ({database})", "app.main:create_app", env, database)


def baseline(dsn: str) -> Target:
    env = {"BENCH_BASELINE_DSN": dsn}
    return Target("baseline (postgres)", "bench.baseline:create_baseline", env, "postgres")


@contextmanager
def postgres_database(admin_dsn: str) -> Iterator[str]:
    """A fresh database in the local PostgreSQL; its asyncpg DSN. Dropped afterwards."""
    name = f"vg_bench_{uuid.uuid4().hex[:10]}"
    base = admin_dsn.rsplit("/", 1)[0]

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def measure(
    target: Target, workdir: Path, *, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    """One phase against a freshly started server: closed loop if `rate` is 0."""
    port = procs.free_port()
    log = workdir / f"{target.name.split()[0]}-{target.database}-{int(rate)}.log"
    with procs.uvicorn_server(
        target.factory, port=port, env=target.env, log=log, cwd=workdir, app_dir=ROOT
    ) as server:
        if not rate and _use_wrk(args):
            return wrk.closed_loop(
                server.pid, port, workdir=workdir, key=KEY, secret=SECRET, path=CALLBACK_PATH,
                duration=args.duration, connections=args.connections, max_rps=args.max_rps,
                seed=uuid.uuid4().int % 10**9,
            )  # fmt: skip
        return _drive(server.pid, port, rate=rate, args=args)


def _use_wrk(args: argparse.Namespace) -> bool:
    if args.driver == "wrk" and not wrk.available():
        raise SystemExit("--driver wrk: wrk is not on PATH (Debian/Ubuntu: apt-get install wrk)")
    return args.driver == "wrk" or (args.driver == "auto" and wrk.available())


def _drive(pid: int, port: int, *, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    duration = args.fixed_duration if rate else args.duration
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--key", KEY]
    command += ["--secret", SECRET, "--duration", str(duration), "--rate", str(rate)]
    command += ["--connections", str(args.connections), "--seed", str(uuid.uuid4().int % 10**9)]
    command += ["--max-rps", str(args.max_rps)]
    loadgen = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert loadgen.stdout is not None
    _expect(loadgen.stdout.readline(), "start")
    cpu, db_cpu, started = procs.cpu_seconds(pid), procs.postgres_cpu(), time.monotonic()
    _expect(loadgen.stdout.readline(), "end")
    wall = time.monotonic() - started
    result: dict[str, Any] = json.loads(loadgen.stdout.readline())
    loadgen.wait(timeout=30)
    result["server_cpu"] = round((procs.cpu_seconds(pid) - cpu) / wall, 2)
    result["postgres_cpu"] = round(procs.cpu_used(db_cpu, procs.postgres_cpu()) / wall, 2)
    result["offered_rps"] = rate or None
    result["driver"] = "python"
    return result


def _expect(line: str, word: str) -> None:
    if line.strip() != word:
        raise RuntimeError(f"load generator said {line!r}, expected {word!r}")


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="vg-bench-") as tmp,
        postgres_database(args.postgres) as dsn,
    ):
        workdir = Path(tmp)
        upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        sqlite_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        targets = [
            baseline(dsn),
            verifyguard(dsn.replace("postgresql://", "postgresql+asyncpg://", 1), "postgres"),
        ]
        if not args.skip_sqlite:
            upgrade(sqlite_url)
            targets.append(verifyguard(sqlite_url, "sqlite"))
        for target in targets:
            for rate in (0.0, args.rate):
                print(
                    f"… {target.name}, {'closed loop' if not rate else f'{rate:g} req/s'}",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(
                    {"target": target.name, **measure(target, workdir, rate=rate, args=args)}
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--duration", type=float, default=12.0, help="closed-loop seconds")
    parser.add_argument("--fixed-duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=300.0, help="fixed offered req/s")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-rps", type=float, default=4000.0, help="requests pre-signed per s")
    parser.add_argument(
        "--driver",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="closed loop: wrk (auto: if on PATH) or the Python load generator",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = bench(args)
    print(json.dumps(rows, indent=2) if args.json else render(rows))


if __name__ == "__main__":
    main()
