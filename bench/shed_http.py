"""`python -m bench.shed_http`: the server's CPU per shed answer on the real HTTP path.

uvicorn as bench/run.py starts it (one worker, uvloop, httptools, the listening sockets of
`verifyguard serve`), serving the app with admission refusing every request event from its
start (`create_shedding_app`: the estimate bench.request_cpu --shed sets), on PostgreSQL;
bench/loadgen.py offers --rate req/s Sinch's way (a request on a free keep-alive connection
or a new one, up to --connection-cap). Each row: the server process's CPU seconds (/proc,
all its threads) per 1,000 requests answered in the measured window, its context switches
per request, and the connections the generator opened. With --app-dir A --app-dir B the
checkouts alternate (A B B A ...), so neither always runs on a warmer machine; each must
hold this file (the factory). With --profile the server is sampled by py-spy (raw, native
frames; it slows the server) during the window. With --connection-cost N, then N requests
one after another on one keep-alive connection and N each on a new connection: the server's
CPU per request of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bench import procs
from bench.loadgen import exchange
from bench.payloads import signed_requests
from bench.run import CALLBACK_PATH, KEY, ROOT, SECRET, postgres_database, verifyguard


def create_shedding_app() -> FastAPI:
    """The app, with admission refusing every request event once it started (uvicorn's
    factory): a hold past any budget and no proof that more fit, as request_cpu --shed."""
    from app.main import create_app

    app = create_app()
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with started(app):
            admission = app.state.runtime.outage.admission
            admission.hold = float("inf")
            admission.proven = 0.0
            yield

    app.router.lifespan_context = lifespan
    return app


def _switches(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if "ctxt_switches" in line:
            total += int(line.split()[1])
    return total


def _round(app_dir: Path, args: argparse.Namespace, workdir: Path, n: int) -> dict[str, Any]:
    with postgres_database(args.postgres, prefix=args.db_prefix) as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        migrate = [sys.executable, "-c", f"from app.store.migrate import upgrade; upgrade({url!r})"]
        subprocess.run(migrate, cwd=app_dir, check=True)  # noqa: S603
        env = verifyguard(url, "postgres").env
        cwd = workdir / f"round-{n}"
        cwd.mkdir()
        with procs.uvicorn_server(
            "bench.shed_http:create_shedding_app",
            port=args.port,
            env=env,
            log=workdir / f"round-{n}.log",
            cwd=cwd,
            app_dir=app_dir,
        ) as server:
            row = _drive(server.pid, args, workdir / f"profile-{n}-{app_dir.name}.txt")
            if args.connection_cost:
                row |= asyncio.run(_connection_cost(server.pid, args.port, args.connection_cost))
            return row


async def _connection_cost(pid: int, port: int, count: int) -> dict[str, float]:
    """The server's CPU per request, `count` of them one after another on one keep-alive
    connection, then each on a connection of its own (opened, used once, closed)."""
    requests = signed_requests(
        2 * count, host=f"127.0.0.1:{port}", path=CALLBACK_PATH, key=KEY, secret=SECRET, seed=7
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cpu = procs.cpu_seconds(pid)
    for request in requests[:count]:
        await exchange(reader, writer, request)
    kept = procs.cpu_seconds(pid) - cpu
    writer.close()
    cpu = procs.cpu_seconds(pid)
    for request in requests[count:]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await exchange(reader, writer, request)
        writer.close()
        await writer.wait_closed()
    fresh = procs.cpu_seconds(pid) - cpu
    return {
        "kept_alive_ms_per_request": round(kept * 1000 / count, 3),
        "new_connection_ms_per_request": round(fresh * 1000 / count, 3),
    }


def _drive(pid: int, args: argparse.Namespace, profile: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(args.port), "--key", KEY]
    command += ["--secret", SECRET, "--path", CALLBACK_PATH, "--rate", str(args.rate)]
    command += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    command += ["--connection-cap", str(args.connection_cap), "--deadline-ms", "400"]
    loadgen = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert loadgen.stdout is not None
    assert loadgen.stdout.readline().strip() == "start"
    spy = None
    if args.profile:
        spy_cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--native", "-r", "200"]
        spy_cmd += ["-f", "raw", "-o", str(profile), "--pid", str(pid)]
        spy_cmd += ["-d", str(int(args.duration))]
        spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    (user, system), switches, began = procs.user_system(pid), _switches(pid), time.monotonic()
    assert loadgen.stdout.readline().strip() == "end"
    user_after, system_after = procs.user_system(pid)
    user, system = user_after - user, system_after - system
    cpu, switches = user + system, _switches(pid) - switches
    wall = time.monotonic() - began
    summary: dict[str, Any] = json.loads(loadgen.stdout.readline())
    loadgen.wait(timeout=30)
    if spy is not None:
        spy.wait(timeout=60)
    answered = max(1, int(summary["requests"]))
    return {
        "cpu_s_per_1000": round(cpu * 1000 / answered, 3),
        "user_ms_per_request": round(user * 1000 / answered, 3),
        "system_ms_per_request": round(system * 1000 / answered, 3),
        "server_cpu": round(cpu / wall, 2),
        "switches_per_request": round(switches / answered, 2),
        "answered": answered,
        **{k: summary.get(k) for k in ("p50_ms", "p99_ms", "connections_opened", "driver_cpu")},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app-dir", type=Path, action="append", default=[])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1500.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connection-cap", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2, help="per checkout")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--connection-cost", type=int, default=0, help="then N requests kept alive, N on new ones"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep logs/profiles here")
    args = parser.parse_args(argv)
    args.port = args.port or procs.free_port()
    dirs = args.app_dir or [ROOT]
    order = [d for r in range(args.rounds) for d in (dirs if r % 2 == 0 else dirs[::-1])]
    with tempfile.TemporaryDirectory(prefix="vg-shed-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n, app_dir in enumerate(order):
            row = _round(app_dir.resolve(), args, workdir, n)
            print(json.dumps({"app_dir": str(app_dir), "rate": args.rate, **row}), flush=True)


if __name__ == "__main__":
    main()
