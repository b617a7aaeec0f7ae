"""`python -m bench.run`: VerifyGuard (one worker, starter policy) on a fresh PostgreSQL
database, on PostgreSQL with its counters in Redis, and on SQLite, against the bare
baseline, driven by the same load generator in its own process; prints throughput, latency
percentiles, CPU and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import redis
from prometheus_client.parser import text_string_to_metric_families

from app.store.migrate import upgrade
from bench import console, history, procs, wrk
from bench.procs import VERIFYGUARD_FACTORY
from bench.render import render

ROOT = Path(__file__).resolve().parents[1]
KEY = "0b0c7a54-bench-4c1e-9d2f-5c7a1e000001"
CALLBACK_PATH = "/sinch/verification/events"
SECRET = base64.b64encode(secrets.token_bytes(32)).decode()  # a throwaway app per run
CONSOLE_TOKEN = secrets.token_urlsafe(24)  # --console signs in with it
TARGETS = ("baseline", "postgres", "redis", "sqlite")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    factory: str
    env: dict[str, str]
    database: str
    console: bool = False  # a signed-in console polls during the measured phases


def verifyguard(url: str, database: str, *, redis_url: str | None = None) -> Target:
    env = {
        "VERIFYGUARD_DATABASE_URL": url,
        "VERIFYGUARD_SINCH_APPS": json.dumps({KEY: SECRET}),
        "VERIFYGUARD_ENVIRONMENT": "production",
        "VERIFYGUARD_BOOTSTRAP_TOKEN": CONSOLE_TOKEN,
    }
    if redis_url is None:
        return Target(f"verifyguard ({database})", VERIFYGUARD_FACTORY, env, database)
    env["VERIFYGUARD_REDIS_URL"] = redis_url
    return Target(f"verifyguard ({database}+redis)", VERIFYGUARD_FACTORY, env, database)


def baseline(dsn: str) -> Target:
    env = {"BENCH_BASELINE_DSN": dsn}
    return Target("baseline (postgres)", "bench.baseline:create_baseline", env, "postgres")


@contextmanager
def postgres_database(admin_dsn: str, prefix: str = "vg_bench_") -> Iterator[str]:
    """A fresh database in the local PostgreSQL; its asyncpg DSN. Dropped afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
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
    target: Target, workdir: Path, *, rate: float, args: argparse.Namespace, then: float = 0.0
) -> dict[str, Any]:
    """One phase against a freshly started server: closed loop if `rate` is 0; with `then`,
    `rate` offered as Sinch does and then `then` req/s (the load dropping). For
    VerifyGuard, also how many answers were the fallback (from its /metrics)."""
    port = args.port or procs.free_port()
    mark = "-console" if target.console else ""
    name = f"{target.name.split()[0]}-{target.database}-{int(rate)}{mark}-{uuid.uuid4().hex[:6]}"
    log = workdir / f"{name}.log"
    # Each phase in a directory of its own: its spool (./spool) starts empty, so no phase
    # replays the fallbacks of the one before it while being measured.
    cwd = workdir / name
    cwd.mkdir(exist_ok=True)
    with (
        procs.uvicorn_server(
            target.factory,
            port=port,
            env=target.env,
            log=log,
            cwd=cwd,
            app_dir=args.app_dir,
            listeners=args.server_listeners,
        ) as server,
        _console(target, port, args.console_overview_every) as seen,
    ):
        seeded = None
        if target.factory == VERIFYGUARD_FACTORY:
            seeded = history.seed_verified(port, key=KEY, secret=SECRET, path=CALLBACK_PATH)
        fallbacks = Fallbacks(port, args.deadline_ms / 1000)
        if not rate and _use_wrk(args):
            result = wrk.closed_loop(
                server.pid, port, workdir=workdir, key=KEY, secret=SECRET, path=CALLBACK_PATH,
                duration=args.duration, connections=args.connections, max_rps=args.max_rps,
                seed=uuid.uuid4().int % 10**9, phase=fallbacks.phase,
            )  # fmt: skip
        else:
            result = _drive(server.pid, port, rate=rate, then=then, args=args, fallbacks=fallbacks)
    result.setdefault("fallbacks", fallbacks.counted)
    result["seeded"] = seeded
    result["console"] = seen.summary if seen else None
    return result


@contextmanager
def _console(target: Target, port: int, every: float) -> Iterator[console.Polling | None]:
    if not target.console:
        yield None
        return
    with console.polling(port, CONSOLE_TOKEN, cwd=ROOT, overview_every=every) as seen:
        yield seen


class Fallbacks:
    """Fallback answers during the measured phase (not the warm-up), from /metrics; with
    marks (the overload phase's "drop" and "settled"), also between each and the next, with
    how many answers the server timed within `deadline` of their receipt (its histogram).
    A mark is read when /metrics answers: past capacity that request queues with the load,
    so the overload window's figures run on until the backlog is through (its "drop" read
    then finds little left: the window covers the answers to the overload's requests)."""

    def __init__(self, port: int, deadline: float = 0.4) -> None:
        self.port = port
        self.deadline = deadline
        self.counted: int | None = None
        self._before: float | None = None
        self.marks: list[tuple[str, float | None, tuple[float, float] | None]] = []

    def phase(self, started: bool) -> None:
        now = _fallbacks(self.port)
        if started:
            self._before = now
        self.mark("start" if started else "end", now)
        if not started and now is not None and self._before is not None:
            self.counted = round(now - self._before)

    def mark(self, name: str, fallbacks: float | None = None) -> None:
        if fallbacks is None:
            fallbacks = _fallbacks(self.port)
        self.marks.append((name, fallbacks, _timed(self.port, self.deadline)))

    def between(self) -> dict[str, dict[str, int | None]]:
        """From each mark to the next, by the first's name ("start": the phase): fallbacks,
        answers the server timed, and of those, within the deadline from their receipt."""
        windows: dict[str, dict[str, int | None]] = {}
        for (name, f0, t0), (_, f1, t1) in zip(self.marks, self.marks[1:], strict=False):
            windows[name] = {
                "fallbacks": round(f1 - f0) if f0 is not None and f1 is not None else None,
                "server_answers": round(t1[0] - t0[0]) if t0 and t1 else None,
                "server_within_deadline": round(t1[1] - t0[1]) if t0 and t1 else None,
            }
        return windows


def _timed(port: int, deadline: float) -> tuple[float, float] | None:
    """Request events the server answered so far, and of those within `deadline` of their
    receipt (verifyguard_decision_seconds); None without such a histogram or bucket."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    except (OSError, ValueError):
        return None
    count, within = 0.0, None
    for family in text_string_to_metric_families(text):
        if family.name != "verifyguard_decision_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_bucket") and _le(sample.labels) == deadline:
                within = (within or 0.0) + sample.value
    return None if within is None else (count, within)


def _le(labels: dict[str, str]) -> float | None:
    try:
        return float(labels.get("le", ""))
    except ValueError:
        return None


def _fallbacks(port: int) -> float | None:
    """Fallback answers so far; None where there are no such metrics (the baseline)."""
    try:
        return sum(fallbacks_by_cause(port).values())
    except (OSError, ValueError):
        return None  # the baseline has no metrics


def fallbacks_by_cause(port: int) -> dict[str, float]:
    """Fallback answers so far, by cause (verifyguard_fallback_answers_total)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "verifyguard_fallback_answers":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    cause = sample.labels.get("cause", "")
                    found[cause] = found.get(cause, 0.0) + sample.value
    return found


def _use_wrk(args: argparse.Namespace) -> bool:
    if args.driver == "wrk" and not wrk.available():
        raise SystemExit("--driver wrk: wrk is not on PATH (Debian/Ubuntu: apt-get install wrk)")
    return args.driver == "wrk" or (args.driver == "auto" and wrk.available())


def _drive(
    pid: int,
    port: int,
    *,
    rate: float,
    args: argparse.Namespace,
    fallbacks: Fallbacks,
    then: float = 0.0,
) -> dict[str, Any]:
    duration = args.fixed_duration if rate else args.duration
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--key", KEY]
    command += ["--secret", SECRET, "--duration", str(duration), "--rate", str(rate)]
    command += ["--connections", str(args.connections), "--seed", str(uuid.uuid4().int % 10**9)]
    command += ["--max-rps", str(args.max_rps)]
    if then:  # Sinch's way, then the load drops: bench/scheduled.py
        command += ["--connection-cap", str(args.overload_connections)]
        command += ["--then-rate", str(then), "--then-seconds", str(args.recovery_seconds)]
        command += ["--deadline-ms", str(args.deadline_ms)]
    if not then:
        # A fixed rate's fallbacks are counted from before its warm-up (stricter), so that
        # reading the server's /metrics (two requests, ~2.5 ms each on its event loop) does
        # not land in the measured window: it made the window's first answers a clump of
        # 8-14 ms ones at 300/s. Past capacity the window's marks are read as it begins.
        fallbacks.phase(True)
    loadgen = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert loadgen.stdout is not None
    _expect(loadgen.stdout.readline(), "start")
    if then:
        fallbacks.phase(True)
    cpu, db_cpu, started = procs.cpu_seconds(pid), procs.postgres_cpu(), time.monotonic()
    redis_cpu = procs.redis_cpu()
    while (line := loadgen.stdout.readline().strip()) in ("drop", "settled"):
        fallbacks.mark(line)
    _expect(line, "end")
    wall = time.monotonic() - started
    fallbacks.phase(False)
    result: dict[str, Any] = json.loads(loadgen.stdout.readline())
    if len(fallbacks.marks) > 2:
        between = fallbacks.between()
        result["by_window"] = between
        result["fallbacks"] = between["start"]["fallbacks"]  # the over-capacity window's own
    loadgen.wait(timeout=30)
    result["server_cpu"] = round((procs.cpu_seconds(pid) - cpu) / wall, 2)
    result["postgres_cpu"] = round(procs.cpu_used(db_cpu, procs.postgres_cpu()) / wall, 2)
    result["redis_cpu"] = round(procs.cpu_used(redis_cpu, procs.redis_cpu()) / wall, 2)
    result["offered_rps"] = rate or None
    result["driver"] = "python"
    return result


def _expect(line: str, word: str) -> None:
    if line.strip() != word:
        raise RuntimeError(f"load generator said {line!r}, expected {word!r}")


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every phase of a VerifyGuard target on a database of its own, created and migrated
    just before it: no phase inherits the verifications and counters of the one before it
    (the starter's unverified-attempt rules would deny most of a second phase's attempts).

    The closed loops come first, in --rounds rounds of every target, each round in the
    reverse order of the one before (A B, B A, …): this machine's speed drifts by a third
    within minutes, so each VerifyGuard closed loop is compared with the baseline of its own
    round, a few minutes apart at most (render.py `_ratios`). Then each VerifyGuard target's
    offered rates, and its overload phase from its closed loops' median."""
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="vg-bench-") as tmp,
        postgres_database(args.postgres, args.database_prefix) as dsn,
    ):
        workdir = Path(tmp)
        targets = _targets(args, dsn)
        closed: dict[str, list[float]] = {}
        for round_, target in in_rounds(targets, 0 if args.no_closed_loop else args.rounds):
            for row in _phases(target, workdir, rate=0.0, then=0.0, args=args):
                row["round"] = round_
                closed.setdefault(row["target"], []).append(row["rps"])
                rows.append(row)
        for target in targets:
            vg = target.factory == VERIFYGUARD_FACTORY
            rates = [(rate, 0.0) for rate in args.rates or [args.rate]]
            if vg and args.overload and args.overload_rate:  # the same for every version
                rates.append((args.overload_rate, round(args.overload_rate / 4)))
            elif vg and args.overload and closed.get(target.name):
                # Past capacity: twice what the closed loop answered, offered as Sinch
                # does; then half of it (a load it carries), to see it recover.
                answered = statistics.median(closed[target.name])
                over = round(min(args.max_rps, args.overload_factor * answered))
                rates.append((over, round(answered / 2)))
            for rate, then in rates:
                rows += _phases(target, workdir, rate=rate, then=then, args=args)
    return rows


def in_rounds(targets: Sequence[T], rounds: int) -> list[tuple[int, T]]:
    """The closed loops' order: `rounds` rounds (numbered from 1) of every target, each in
    the reverse order of the one before, so that no target always runs first or last."""
    return [
        (round_, target)
        for round_ in range(1, rounds + 1)
        for target in (targets if round_ % 2 else targets[::-1])
    ]


def _phases(
    target: Target, workdir: Path, *, rate: float, then: float, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The phase at `rate` (0: closed loop), or with --console its pairs without and with."""
    rounds = args.console_rounds if args.console else 0
    return [
        _phase(variant, workdir, rate=rate, then=then, args=args, order=order)
        for order, variant in enumerate(_variants(target, rounds))
    ]


def _phase(
    target: Target,
    workdir: Path,
    *,
    rate: float,
    then: float,
    args: argparse.Namespace,
    order: int,
) -> dict[str, Any]:
    load = "closed loop" if not rate else f"{rate:g} req/s"
    load += f", then {then:g} req/s" if then else ""
    print(f"… {target.name}, {load}", file=sys.stderr, flush=True)
    with fresh_store(target, workdir, args) as fresh:
        measured = measure(fresh, workdir, rate=rate, then=then, args=args)
        row = {"target": target.name, **measured}
    row["order"] = order
    return row


def _variants(target: Target, rounds: int) -> list[Target]:
    """The target alone; with --console, `rounds` pairs of it without and with a console,
    alternating which goes first (A B B A …), so neither always runs on a warmer machine."""
    if rounds <= 0 or target.factory != VERIFYGUARD_FACTORY:
        return [target]
    twin = dataclasses.replace(target, name=f"{target.name} + console", console=True)
    pairs = [(target, twin) if i % 2 == 0 else (twin, target) for i in range(rounds)]
    return [phase for pair in pairs for phase in pair]


@contextmanager
def fresh_store(target: Target, workdir: Path, args: argparse.Namespace) -> Iterator[Target]:
    """The target on an empty, migrated database of its own (the baseline: as it is)."""
    if target.factory != VERIFYGUARD_FACTORY:
        yield target
        return
    if target.database == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield _on(target, url)
        return
    if "VERIFYGUARD_REDIS_URL" in target.env:
        _flush(target.env["VERIFYGUARD_REDIS_URL"])  # no counts of the phase before
    with postgres_database(args.postgres, args.database_prefix) as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        yield _on(target, url)


def _reachable(url: str) -> bool:
    """Whether the redis target can run (`make bench` on a machine without Redis skips it)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"redis target skipped: no Redis at {url} ({exc})", file=sys.stderr)
        return False
    finally:
        client.close()
    return True


def _flush(url: str) -> None:
    """Empty the Redis database of the `redis` target (one given to the bench alone)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def _on(target: Target, url: str) -> Target:
    return dataclasses.replace(target, env={**target.env, "VERIFYGUARD_DATABASE_URL": url})


def _targets(args: argparse.Namespace, dsn: str) -> list[Target]:
    """The targets `--targets` names (without --skip-sqlite's); each VerifyGuard phase gets
    its own database (fresh_store)."""
    chosen = [t for t in args.targets if not (args.skip_sqlite and t == "sqlite")]
    targets = []
    if "baseline" in chosen:
        targets.append(baseline(dsn))
    if "postgres" in chosen:
        targets.append(verifyguard("postgresql+asyncpg://per-phase", "postgres"))
    if "redis" in chosen and _reachable(args.redis):
        url = "postgresql+asyncpg://per-phase"
        targets.append(verifyguard(url, "postgres", redis_url=args.redis))
    if "sqlite" in chosen:
        targets.append(verifyguard("sqlite+aiosqlite:///per-phase", "sqlite"))
    return targets


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = set(names) - set(TARGETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown targets: {', '.join(sorted(unknown))}")
    return names


def _rates(text: str) -> list[float]:
    return [float(rate) for rate in text.split(",") if rate.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--duration", type=float, default=12.0, help="closed-loop seconds")
    parser.add_argument("--fixed-duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=300.0, help="fixed offered req/s")
    parser.add_argument(
        "--rates", type=_rates, default=None, help="several offered rates, e.g. 100,150,300"
    )
    parser.add_argument(
        "--targets",
        type=_names,
        default=list(TARGETS),
        help="comma-separated: baseline,postgres,redis,sqlite (redis: PostgreSQL with the "
        "counters in Redis, at --redis)",
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/15",
        help="the redis target's Redis database, flushed before each phase: give the bench "
        "one of its own",
    )
    parser.add_argument("--no-closed-loop", action="store_true", help="offered rates only")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="closed-loop rounds of every target (A B, then B A, …): each VerifyGuard closed "
        "loop is compared with its own round's baseline",
    )
    parser.add_argument(
        "--database-prefix", default="vg_bench_", help="name prefix of the PostgreSQL database"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-rps", type=float, default=4000.0, help="requests pre-signed per s")
    parser.add_argument(
        "--driver",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="closed loop: wrk (auto: if on PATH) or the Python load generator",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument(
        "--no-overload",
        dest="overload",
        action="store_false",
        help="skip the phase at twice the closed-loop throughput",
    )
    parser.add_argument(
        "--overload-factor",
        type=float,
        default=2.0,
        help="the overload phase offers this many times the closed loop's req/s",
    )
    parser.add_argument(
        "--overload-rate",
        type=float,
        default=0.0,
        help="offer this many req/s in the overload phase instead (then a quarter of it), "
        "the same for every version compared; with --no-closed-loop, that phase only",
    )
    parser.add_argument(
        "--overload-connections",
        type=int,
        default=1024,
        help="the overload phase's cap on connections (bench/scheduled.py; the server's "
        "backlog is uvicorn's 2048, its open files `ulimit -n`)",
    )
    parser.add_argument(
        "--recovery-seconds",
        type=float,
        default=6.0,
        help="after the overload phase, seconds at half the closed-loop req/s (the first "
        "one not counted as settled)",
    )
    parser.add_argument(
        "--deadline-ms",
        type=float,
        default=400.0,
        help="the server's decision deadline (VERIFYGUARD_DECISION_DEADLINE_MS): the "
        "overload phase counts the answers within it",
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="measure each VerifyGuard load with and without a signed-in console polling "
        "(bench/console.py), each phase on a fresh database",
    )
    parser.add_argument(
        "--console-rounds",
        type=int,
        default=2,
        help="with --console: pairs per load, alternating which runs first (2: A B B A)",
    )
    parser.add_argument(
        "--console-overview-every",
        type=float,
        default=30.0,
        help="seconds between the console's overview polls (the page: 30; the feed: 2)",
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=ROOT,
        help="serve the app of another checkout (a same-run comparison with a former version)",
    )
    parser.add_argument(
        "--server-listeners",
        type=int,
        help="VerifyGuard's listening sockets (default: as `verifyguard serve` listens;"
        " 1: one socket, as before 2026-12-06)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--port", type=int, default=0, help="serve on this port (default: any free one)"
    )
    args = parser.parse_args(argv)
    rows = bench(args)
    print(json.dumps(rows, indent=2) if args.json else render(rows))


if __name__ == "__main__":
    main()
