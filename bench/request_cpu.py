"""`python -m bench.request_cpu`: the app's own CPU per request event, in process.

The app (create_app, its lifespan, the starter policy) on a fresh SQLite file or
PostgreSQL database, driven through ASGI (no sockets, no uvicorn): a verified history
(bench/history.py's ranges, 5 verified sign-ups each), a warm-up, then --count request
events straight through the ASGI interface, each a distinct legit number
(signed before the clock starts). Reports the process's CPU seconds
(all its threads: aiosqlite's included; PostgreSQL's backends not) per 1,000 request
events, for each of --rounds rounds. One request at a time (the default) keeps the figure free
of the deadline's fallbacks and of batching; --concurrency N keeps N in flight, so that on
PostgreSQL they share counting and storing batches as under load. Run two versions side by
side to compare them on a loaded machine (the figure is CPU time, but a busy machine still
inflates it somewhat).

For a figure load does not change, count instructions with callgrind around the measured
rounds only. Under valgrind a request event takes ~50x as long: give it a deadline it can
meet (VERIFYGUARD_DECISION_DEADLINE_MS=10000, or fallbacks and shedding change the path
measured) and quiet the periodic jobs, whose share grows with the run's length
(VERIFYGUARD_ALERTS__ENABLED=false VERIFYGUARD_BASELINE_REFRESH_SECONDS=3600
VERIFYGUARD_OUTAGE_PROBE_INTERVAL_MS=60000 VERIFYGUARD_STATS_ROLLUP_INTERVAL_SECONDS=0);
--concurrency 1 gives the steadiest count (batches of one, whatever the timing):
    BENCH_CALLGRIND=1 valgrind --tool=callgrind --instr-atstart=no \\
        --callgrind-out-file=cg.out .venv/bin/python -m bench.request_cpu --store postgres \\
        --count 500 --rounds 1 --concurrency 1
    grep ^totals: cg.out    # divided by --count: instructions per request event

With --shed every measured request event is refused by admission (its estimate set past
any budget before the measured rounds: what a request past capacity gets), so the figure
is a shed answer's cost: the HTTP side, the signature, the fallback, the spool and the
reporting. The events answered before the rounds (the history, the warm-up) are decided.

With --redis URL (PostgreSQL only) the counters live in Redis (a prefix of its own, deleted
afterwards). Each row then also gives, per 1,000 request events, the CPU seconds of the
bench database's PostgreSQL backends (/proc: this host's server) and its transactions, and,
with a Redis server of its own (`redis-server --port N --save ''`: INFO is server-wide), the
Redis server's CPU seconds and its commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.simulator.catalog import LEGIT
from app.sinch import samples
from app.sinch.signature import callback_headers
from app.store.migrate import upgrade
from bench.payloads import legit_request_events
from bench.run import CALLBACK_PATH, KEY, SECRET, postgres_database, verifyguard


def _body_and_headers(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = callback_headers(
        key=KEY, secret_b64=SECRET, body=body, path=CALLBACK_PATH, now=datetime.now(UTC)
    )
    return body, headers


async def _post(client: httpx.AsyncClient, event: dict[str, Any]) -> dict[str, Any]:
    body, headers = _body_and_headers(event)
    response = await client.post(CALLBACK_PATH, content=body, headers=headers)
    response.raise_for_status()
    answer: dict[str, Any] = response.json() if response.content else {}
    return answer


async def _call(app: Any, body: bytes, headers: dict[str, str]) -> bytes:
    """One POST straight through the ASGI interface (what uvicorn would hand the app)."""
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CALLBACK_PATH,
        "raw_path": CALLBACK_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[bytes] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # a disconnect never comes
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(sent)


def _backend_cpu(pids: list[int]) -> float:
    """CPU seconds the processes `pids` used so far (those gone since count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class _Servers:
    """The database's (and Redis's) side of a round: its backends' CPU and transactions."""

    def __init__(self, url: str, redis_url: str | None) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.redis_url = redis_url

    async def snapshot(self) -> dict[str, float]:
        import asyncpg
        from redis.asyncio import Redis

        await asyncio.sleep(1.0)  # PostgreSQL publishes a backend's statistics within 1 s
        conn = await asyncpg.connect(self.dsn)
        try:
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
            xacts = await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
        finally:
            await conn.close()
        out = {"pg_cpu": _backend_cpu([r["pid"] for r in pids]), "pg_xacts": float(xacts)}
        if self.redis_url:
            client = Redis.from_url(self.redis_url)
            cpu, stats = await client.info("cpu"), await client.info("commandstats")
            await client.aclose()
            out["redis_cpu"] = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
            out["redis_calls"] = float(sum(v["calls"] for v in stats.values()))
            out["fcalls"] = float(stats.get("cmdstat_fcall", {}).get("calls", 0))
        return out


def _callgrind(state: str) -> None:
    if os.environ.get("BENCH_CALLGRIND"):
        command = ["callgrind_control", "-i", state, str(os.getpid())]
        subprocess.run(command, capture_output=True, check=False)  # noqa: S603


async def _answer_all(
    app: Any, signed: list[tuple[bytes, dict[str, str]]], at_once: int
) -> list[str]:
    """Each signed request event's action, `at_once` of them in flight."""
    queue = iter(signed)
    actions: list[str] = []

    async def worker() -> None:
        for body, headers in queue:
            actions.append(str(json.loads(await _call(app, body, headers)).get("action")))

    await asyncio.gather(*(worker() for _ in range(at_once)))
    return actions


async def _history(client: httpx.AsyncClient, rng: random.Random) -> None:
    """Five verified sign-ups to each legit range, as bench/history.py sends them."""
    for span in LEGIT:
        for _ in range(5):
            number, ident = span.number(rng), str(uuid.uuid4())
            request = samples.request_event(number=number, verification_id=ident, price=span.price)
            if (await _post(client, request)).get("action") == "allow":
                await _post(client, samples.result_event(verification_id=ident, number=number))


async def _measure(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from app.main import create_app

    for name, value in verifyguard(url, "bench", redis_url=args.redis).env.items():
        os.environ[name] = value
    prefix = f"vgcpu:{uuid.uuid4().hex[:8]}:"
    if args.redis:
        os.environ["VERIFYGUARD_REDIS_PREFIX"] = prefix
    servers = _Servers(url, args.redis) if args.store == "postgres" else None
    app = create_app()
    rng = random.Random(17)  # noqa: S311 - load shape, not secrets
    rows = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await _history(client, rng)
            for event in legit_request_events(rng, 200):
                await _post(client, event)
            if args.shed:
                _shed_everything(app.state.runtime.outage.admission)
            for _ in range(args.rounds):
                signed = [
                    _body_and_headers(event) for event in legit_request_events(rng, args.count)
                ]
                before = await servers.snapshot() if servers else {}
                _callgrind("on")
                started = time.process_time()
                answered = await _answer_all(app, signed, args.concurrency)
                cpu = time.process_time() - started
                _callgrind("off")
                after = await servers.snapshot() if servers else {}
                actions: dict[str, int] = {}
                for action in answered:
                    actions[action] = actions.get(action, 0) + 1
                per = 1000 / args.count
                row: dict[str, Any] = {"cpu_s_per_1000": round(cpu * per, 3)}
                for name, value in after.items():
                    row[f"{name}_per_1000"] = round((value - before[name]) * per, 3)
                rows.append({**row, "actions": actions})
    if args.redis:
        await _delete_keys(args.redis, prefix)
    return rows


def _shed_everything(admission: Any) -> None:
    """Admission's own refusal for every request event from now on: a hold past any budget,
    and no proof that more fit (its public estimate; nothing else patched)."""
    admission.hold = float("inf")
    admission.proven = 0.0


async def _delete_keys(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    names = [key async for key in client.scan_iter(f"{prefix}*", count=1000)]
    for i in range(0, len(names), 500):
        await client.delete(*names[i : i + 500])
    await client.aclose()


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[str]:
    if args.store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="vg-cpu-") as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'cpu.db'}"
        return
    with postgres_database(args.postgres, prefix=args.db_prefix) as dsn:
        yield dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1, help="request events in flight")
    parser.add_argument(
        "--shed", action="store_true", help="admission refuses every measured request event"
    )
    parser.add_argument("--redis", default=None, help="counters in this Redis (--store postgres)")
    args = parser.parse_args(argv)
    if args.redis and args.store != "postgres":
        parser.error("--redis needs --store postgres")
    with tempfile.TemporaryDirectory(prefix="vg-cpu-cwd-") as cwd, _database(args) as url:
        os.chdir(cwd)  # the spool directory lands here
        upgrade(url)
        rows = asyncio.run(_measure(url, args))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    for row in rows:
        store = f"{args.store}+redis" if args.redis else args.store
        print(json.dumps({"store": store, "count": args.count, **row}))


if __name__ == "__main__":
    main()
