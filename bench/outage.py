"""Outage drill: VerifyGuard (a uvicorn process) behind a fault-injecting TCP proxy in front
of PostgreSQL, under concurrent signed load; the database is cut, restored, slowed, restored.

Prints events sent, answered, stored (each exactly once) and the worst answer latency
during the outage. `python -m bench.outage [--concurrency 24] [--cut 5] [--slow 3]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from app.store.base import create_engine
from app.store.migrate import upgrade
from bench.procs import free_port, uvicorn_server
from tests.ops.load import Load
from tests.ops.outage import claims, stored_requests
from tests.support import TEST_APP_KEY, TEST_APP_SECRET, SinchSender
from tests.support_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[1]
PATH = "/sinch/verification/events"


class ProxyThread:
    """The proxy on its own event loop, so it forwards while this one waits on uvicorn."""

    def __init__(self, pg_url: str) -> None:
        self.proxy = FaultProxy.for_url(pg_url)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.call(self.proxy.start())

    def call(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def slow(self, delay: float) -> None:
        self.loop.call_soon_threadsafe(self.proxy.slow, delay)


async def _admin(url: str, sql: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    name = f"vg_outage_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def drill(base: str, proxy: ProxyThread, args: argparse.Namespace) -> Load:
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        load = Load(SinchSender(http, path=PATH))
        running = asyncio.create_task(load.run(args.concurrency))
        for phase, seconds, fault in (
            ("normal", 3, None),
            ("outage", args.cut, "cut"),
            ("recovery", 3, "restore"),
            ("outage", args.slow, "slow"),
            ("recovery", 3, "restore"),
        ):
            if fault == "cut":
                await asyncio.to_thread(proxy.call, proxy.proxy.cut())
            elif fault == "slow":
                proxy.slow(args.delay)
            elif fault == "restore":
                await asyncio.to_thread(proxy.call, proxy.proxy.restore())
            load.phase = phase
            await asyncio.sleep(seconds)
        load.stop.set()
        await running
        await _ready(http)
        load.metrics = _scrape((await http.get("/metrics")).text)  # type: ignore[attr-defined]
    return load


def _scrape(exposition: str) -> dict[str, float]:
    """The server's own view: decision latency buckets, spool and fallback counters."""
    wanted = ("verifyguard_decision_seconds_bucket", "verifyguard_spool_", "verifyguard_fallback")
    found: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith(wanted) and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


async def _ready(http: httpx.AsyncClient, within: float = 120) -> None:
    """Until /readyz says `ready`: the database is back and the spool replayed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await http.get("/readyz")).json().get("status") == "ready":
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("VerifyGuard did not become ready")


async def figures(load: Load, pg_url: str) -> dict[str, Any]:
    engine = create_engine(pg_url)
    try:
        requests = load.requests()
        stored = await stored_requests(engine, [s.ident for s in requests])
        once = await claims(engine, "VerificationRequestEvent:")
    finally:
        await engine.dispose()
    outage = sorted(s.seconds for s in requests if s.phase == "outage")
    told = {s.ident: s.answer for s in requests}
    return {
        "events_sent": len(load.sent),
        "answered_200": sum(s.status == 200 for s in load.sent),
        "answered_5xx": sum(s.status >= 500 for s in load.sent),
        "request_events": len(requests),
        "stored_exactly_once": sum(once.get(s.ident) == 1 for s in requests),
        "stored_answer_matches": sum(
            stored[i]["answer"] == a for i, a in told.items() if i in stored
        ),
        "degraded": sum(bool(r["degraded"]) for r in stored.values()),
        "fallback": sum(r["reason"] == "fallback" for r in stored.values()),
        "during_outage": len(outage),
        "worst_ms_during_outage": round(1000 * outage[-1], 1) if outage else None,
        "p99_ms_during_outage": round(1000 * outage[int(0.99 * (len(outage) - 1))], 1)
        if outage
        else None,
        "worst_ms_by_phase": {
            phase: round(1000 * load.worst(phase), 1) for phase in ("normal", "outage", "recovery")
        },
        "client_over_deadline": sum(s.seconds > load.deadline for s in requests),
        "server": getattr(load, "metrics", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get(
        "VERIFYGUARD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--postgres-url", default=default)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--cut", type=float, default=5.0, help="seconds the database is cut")
    parser.add_argument("--slow", type=float, default=3.0, help="seconds it is slowed")
    parser.add_argument("--delay", type=float, default=0.6, help="delay per chunk when slow")
    parser.add_argument("--deadline-ms", type=int, default=400)
    args = parser.parse_args()
    with scratch_database(args.postgres_url) as pg_url, tempfile.TemporaryDirectory() as tmp:
        proxy, port = ProxyThread(pg_url), free_port()
        env = {
            "VERIFYGUARD_ENVIRONMENT": "test",
            "VERIFYGUARD_DATABASE_URL": proxy.proxy.url(pg_url),
            "VERIFYGUARD_SINCH_APPS": json.dumps({TEST_APP_KEY: TEST_APP_SECRET}),
            "VERIFYGUARD_SPOOL_DIR": str(Path(tmp) / "spool"),
            "VERIFYGUARD_DECISION_DEADLINE_MS": str(args.deadline_ms),
            "VERIFYGUARD_LOG_LEVEL": "WARNING",
            "VERIFYGUARD_DATABASE_CONNECT_TIMEOUT_SECONDS": "1",
        }
        log = Path(tmp) / "server.log"
        with uvicorn_server(
            "app.main:create_app", port=port, env=env, log=log, cwd=Path(tmp), app_dir=ROOT
        ):
            load = asyncio.run(drill(f"http://127.0.0.1:{port}", proxy, args))
            load.deadline = args.deadline_ms / 1000  # type: ignore[attr-defined]
        result = asyncio.run(figures(load, pg_url))
        result |= {"deadline_ms": args.deadline_ms, "concurrency": args.concurrency}
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
