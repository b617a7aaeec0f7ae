"""`python -m bench.backtest_scale`: a full backtest of the starter policy and of a stricter
candidate over all the history a database holds (1M verifications from
`python -m bench.audit.generate`), run in this process as the backtest worker runs it. Prints
per candidate: wall and CPU time, attempts per second, peak RSS sampled during the run, and the
load average before and after.

    .venv/bin/python -m bench.backtest_scale --url postgresql://postgres@127.0.0.1:5432/vg_1m_copy
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import os
import resource
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.starter import starter_document
from app.services.backtest import jobs
from app.store import backtests as store
from app.store.base import create_engine
from app.store.tables import verifications

DEFAULTS = jobs.Defaults(default_action="allow", timezone="UTC", bucket_seconds=60)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def stricter() -> dict[str, Any]:
    """The starter policy, tightened: 2 unverified attempts an hour per number (not 3), and a
    floor of 10 per 1,000-number block (not 20)."""
    document = copy.deepcopy(starter_document())
    for rule in document["rules"]:
        if rule["name"] == "number-unverified":
            rule["when"]["velocity"]["max"] = 2
        if rule["name"] == "range-unverified":
            for condition in rule["when"]["all"]:
                if "velocity" in condition:
                    condition["velocity"]["limit"]["floor"] = 10
    return document


CANDIDATES = {"starter": starter_document, "stricter": stricter}


class RssSampler:
    """The process's resident set, read from /proc every `every` seconds while it runs."""

    def __init__(self, every: float = 0.1) -> None:
        self.every, self.peak, self.samples = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def history(engine: AsyncEngine) -> tuple[datetime, datetime]:
    """[oldest, newest] stored request times."""
    at = verifications.c.requested_at
    async with engine.connect() as conn:
        oldest, newest = (await conn.execute(select(func.min(at), func.max(at)))).one()
    return oldest, newest


async def one(engine: AsyncEngine, name: str, since: datetime, until: datetime) -> dict[str, Any]:
    record = await jobs.start(
        engine,
        document=CANDIDATES[name](),
        since=since,
        until=until,
        by="bench",
        now=datetime.now(UTC),
        defaults=DEFAULTS,
    )
    load_before = os.getloadavg()
    rss_before = RssSampler.rss()
    wall, cpu = time.perf_counter(), time.process_time()
    with RssSampler() as sampler:
        status = await jobs.execute(engine, record.id)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    async with engine.connect() as conn:
        final = await store.get(conn, record.id)
    result = (final.result if final else None) or {}
    attempts = result.get("attempts", 0) + sum(s["count"] for s in result.get("skipped", []))
    return {
        "candidate": name,
        "status": status,
        "attempts": attempts,
        "candidate_denied": result.get("candidate", {}).get("denied"),
        # The whole result, to hold a faster replay to the same answer.
        "result_sha256": hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest(),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "attempts_per_s": round(attempts / wall) if wall else None,
        "rss_before_mb": round(rss_before / 2**20, 1),
        "peak_rss_mb": round(sampler.peak / 2**20, 1),
        "rss_samples": sampler.samples,
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


async def run(args: argparse.Namespace) -> None:
    engine = create_engine(args.url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        oldest, newest = await history(engine)
        until = newest + timedelta(seconds=1)
        since = until - timedelta(days=args.days) if args.days else oldest
        print(f"… history {oldest.isoformat()} to {newest.isoformat()}", file=sys.stderr)
        for name in args.candidates:
            print(json.dumps(await one(engine, name, since, until)), flush=True)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/vg_audit_bench")
    parser.add_argument("--days", type=float, default=0, help="0: all the stored history")
    parser.add_argument(
        "--candidates", nargs="+", choices=sorted(CANDIDATES), default=["starter", "stricter"]
    )
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
