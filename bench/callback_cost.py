"""`python -m bench.callback_cost`: what one callback of each kind costs on PostgreSQL
(or, with --store sqlite, on SQLite: statements and server CPU only).

One uvicorn worker on a fresh PostgreSQL database; --count request events (closed loop,
--connections at once), then a delivery receipt for each, then a result for each. Per
kind and per 1,000 callbacks: statements sent (SQLAlchemy's and the raw asyncpg ones,
BEGIN and COMMIT included, counted inside the server), transactions committed (the
database's xact_commit), CPU seconds of the server process and of the PostgreSQL backends
serving this database (from /proc). CPU seconds do not depend on the machine's load the
way wall-clock figures do (but a slower phase spends more of the server's idle CPU, its
periodic jobs: measured for 5 s before each phase, `_less_idle` takes it off); the
wall-clock rate is printed with the load average.

With --redis URL the counters live in Redis (VERIFYGUARD_REDIS_URL; the database is
flushed first): per 1,000 callbacks also the Redis commands by name (INFO commandstats)
and the Redis server's CPU seconds (INFO cpu). Both are server-wide: point it at a Redis
server nothing else uses while it runs (`redis-server --port N --save ''`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from redis.asyncio import Redis

from app.simulator.catalog import LEGIT, pick
from app.sinch import samples
from app.store.migrate import upgrade
from bench import history, procs
from bench.loadgen import exchange
from bench.run import CALLBACK_PATH, KEY, ROOT, SECRET, _fallbacks, postgres_database, verifyguard
from bench.soak import HOST, _signed

COUNTS: Counter[str] = Counter()
IDLE_SECONDS = 5.0


def counted_app() -> Any:
    """The app, with every statement it sends counted (a uvicorn factory for this bench)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from starlette.responses import JSONResponse

    from app.main import create_app

    def before(*args: Any) -> None:
        COUNTS["sqlalchemy"] += 1

    event.listen(Engine, "before_cursor_execute", before)
    for name in ("execute", "executemany", "fetch", "fetchval", "fetchrow"):
        _count_calls(asyncpg.Connection, name)
    app = create_app()

    async def counts(request: Any) -> JSONResponse:
        return JSONResponse(dict(COUNTS))

    app.add_route("/_bench/counts", counts)
    if os.environ.get("BENCH_PROFILE"):
        _profiled(app, Path(os.environ["BENCH_PROFILE"]))
    return app


def _profiled(app: Any, path: Path) -> None:
    """cProfile over the event loop's thread, in its CPU time (not wall time, which a loaded
    machine fills with waiting); GET /_bench/profile writes its stats."""
    import cProfile

    from starlette.responses import JSONResponse

    current = [cProfile.Profile(time.thread_time)]
    current[0].enable()

    async def dump(request: Any) -> JSONResponse:
        """The stats since the last call, written to `path`; a new profile starts."""
        current[0].disable()
        current[0].dump_stats(path)
        current[0] = cProfile.Profile(time.thread_time)
        current[0].enable()
        return JSONResponse({})

    app.add_route("/_bench/profile", dump)


def _count_calls(cls: Any, name: str) -> None:
    original = getattr(cls, name)

    async def wrapper(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        word = query.strip().split(None, 1)[0].upper().rstrip(";") if query.strip() else ""
        COUNTS[word if word in ("BEGIN", "COMMIT", "ROLLBACK") else f"asyncpg.{name}"] += 1
        return await original(self, query, *args, **kwargs)

    setattr(cls, name, wrapper)


async def _get(port: int, path: str) -> dict[str, int]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))


async def _send_all(port: int, events: list[dict[str, Any]], connections: int) -> int:
    queue = list(reversed(events))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(HOST, port)
        while queue:
            reply = await exchange(reader, writer, _signed(queue.pop(), port))
            failures += not reply.startswith(b"200")
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return failures


async def _database_state(dsn: str, name: str) -> tuple[int, dict[int, float]]:
    conn = await asyncpg.connect(dsn)
    try:
        commits = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", name
        )
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    cpu: dict[int, float] = {}
    for row in pids:
        try:
            cpu[row["pid"]] = procs.cpu_seconds(row["pid"])
        except OSError:
            continue
    return int(commits), cpu


async def _redis_state(url: str) -> tuple[dict[str, int], float]:
    """Calls per Redis command so far, and the Redis server's CPU seconds (server-wide)."""
    client = Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
        cpu = await client.info("cpu")
    finally:
        await client.aclose()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _phase(
    kind: str,
    events: list[dict[str, Any]],
    port: int,
    pid: int,
    dsn: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    connections, profile, redis = args.connections, args.profile, args.redis
    name = dsn.rsplit("/", 1)[1]
    state = _database_state if dsn.startswith("postgresql") else _no_database_state
    counts0 = await _get(port, "/_bench/counts")
    if profile:
        await _get(port, "/_bench/profile")
    await asyncio.sleep(1.0)  # stats of the previous phase reach pg_stat_database
    commits0, backends0 = await state(dsn, name)
    redis0 = await _redis_state(redis) if redis else None
    fallbacks0 = await asyncio.to_thread(_fallbacks, port)
    # The server's CPU while idle (its periodic jobs: alerts, containment polls), per
    # second: a slower phase spends more of it, so it is taken off the figure below.
    idle0, idle_started = procs.cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    idle_rate = (procs.cpu_seconds(pid) - idle0) / (time.perf_counter() - idle_started)
    cpu0, started = procs.cpu_seconds(pid), time.perf_counter()
    failures = await _send_all(port, events, connections)
    seconds, cpu1 = time.perf_counter() - started, procs.cpu_seconds(pid)
    await asyncio.sleep(1.0)  # let the last commits reach pg_stat_database
    commits1, backends1 = await state(dsn, name)
    redis1 = await _redis_state(redis) if redis else None
    fallbacks1 = await asyncio.to_thread(_fallbacks, port)
    counts1 = await _get(port, "/_bench/counts")
    if profile:
        await _get(port, "/_bench/profile")
        os.replace(profile, f"{profile}.{kind}")
    per = 1000 / len(events)
    statements = {k: round((v - counts0.get(k, 0)) * per) for k, v in counts1.items()}
    statements = {k: v for k, v in statements.items() if v}
    row = {
        "kind": kind,
        "callbacks": len(events),
        "failures": failures,
        # answered without the database (a deadline missed on a loaded machine): these
        # send no statement, so the figures below are only comparable when this is 0
        "fallbacks": round((fallbacks1 or 0) - (fallbacks0 or 0)),
        "per_second": round(len(events) / seconds),
        "statements_per_1000": statements,
        "statements_total_per_1000": sum(statements.values()),
        # less the bench's own one (its query of pg_stat_activity); SQLite: not counted
        "commits_per_1000": round((commits1 - commits0 - 1) * per) if commits1 >= 0 else None,
        "server_cpu_s_per_1000": round((cpu1 - cpu0) * per, 3),
        "server_cpu_s_per_1000_less_idle": round((cpu1 - cpu0 - idle_rate * seconds) * per, 3),
        "postgres_backend_cpu_s_per_1000": round(procs.cpu_used(backends0, backends1) * per, 3),
    }
    if redis0 is not None and redis1 is not None:
        # less the bench's own INFO calls (two before the phase ends, two after)
        calls = {k: v - redis0[0].get(k, 0) for k, v in redis1[0].items()}
        calls["info"] = calls.get("info", 0) - 2
        row["redis_commands_per_1000"] = {k: round(v * per) for k, v in calls.items() if v}
        row["redis_cpu_s_per_1000"] = round((redis1[1] - redis0[1]) * per, 3)
    return row


async def _no_database_state(dsn: str, name: str) -> tuple[int, dict[int, float]]:
    """SQLite runs inside the server process: its CPU is the server's, no commit count."""
    return -1, {}


def _events(count: int) -> list[tuple[str, list[dict[str, Any]]]]:
    rng = random.Random(17)  # noqa: S311 - load shape, not secrets
    requests, receipts, results = [], [], []
    for _ in range(count):
        span = pick(rng, LEGIT)
        number, ident = span.number(rng), str(uuid.uuid4())
        requests.append(
            samples.request_event(number=number, verification_id=ident, price=span.price)
        )
        receipts.append(samples.delivered_event(verification_id=ident, number=number))
        results.append(samples.result_event(verification_id=ident, number=number))
    return [("request", requests), ("sms_delivered", receipts), ("result", results)]


@contextmanager
def _database(args: argparse.Namespace, tmp: str) -> Iterator[str]:
    """The DSN of a fresh database: PostgreSQL, or (--store sqlite) a file in `tmp`."""
    if args.store == "sqlite":
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'cost.db'}"
        return
    with postgres_database(args.postgres, prefix=args.db_prefix) as dsn:
        yield dsn


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="vg-cost-") as tmp,
        _database(args, tmp) as dsn,
    ):
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        target = verifyguard(url, args.store)
        env = dict(target.env)
        if args.profile:
            env["BENCH_PROFILE"] = args.profile
        if args.redis:
            asyncio.run(_flush(args.redis))
            env["VERIFYGUARD_REDIS_URL"] = args.redis
        log = Path(tmp) / "server.log"
        with procs.uvicorn_server(
            "bench.callback_cost:counted_app",
            port=args.port,
            env=env,
            log=log,
            cwd=Path(tmp),
            app_dir=ROOT,
        ) as server:
            if args.history:
                history.seed_verified(args.port, key=KEY, secret=SECRET, path=CALLBACK_PATH)
            warm = _events(200)
            for _, events in warm:
                asyncio.run(_send_all(args.port, events, args.connections))
            return [
                asyncio.run(_phase(kind, events, args.port, server.pid, dsn, args))
                for kind, events in _events(args.count)
            ]


async def _flush(url: str) -> None:
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--port", type=int, default=procs.free_port())
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--redis", default="", help="counters in Redis at this URL (its database is flushed)"
    )
    parser.add_argument("--profile", default="", help="cProfile stats to this path (.kind)")
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--history",
        action="store_true",
        help="first a verified history, as make bench gives each phase (bench/history.py)",
    )
    args = parser.parse_args(argv)
    rows = run(args)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
