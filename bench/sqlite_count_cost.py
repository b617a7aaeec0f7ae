"""`python -m bench.sqlite_count_cost [--app-dir DIR]`: the CPU of counting one attempt on SQLite.

The counting part of a decision in a group commit's batch, without the app around it: on
a fresh migrated SQLite file, batches of --batch attempts (one transaction each, as
store/group_commit.py runs them), each attempt counted on three keys (number, range,
country) and its twelve windows read (`SqlCounters.observe`), its settle carried into the
next count (`counters.settle`). Reports process CPU microseconds per attempt, commits
included, after --warm attempts. One thread, no server, no event loop: the figure moves
little with the machine's load, so two versions compare well (`--app-dir` serves another
checkout's `app`: run them alternately).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEYS_WINDOWS = ((3600, "attempts"), (86400, "attempts"), (3600, "allowed"), (3600, "successes"))


def _attempts(count: int, bucket: int, now: Any) -> list[tuple[Any, Any, Any]]:
    from app.store.counter_model import CounterDeltas, Reads, WindowQuery

    rng = random.Random(17)  # noqa: S311 - load shape, not secrets
    found = []
    for _ in range(count):
        keys = (
            f"number:+4670{rng.randrange(10**7):07d}",
            f"range-3:+4670{rng.randrange(100):02d}",
            "country:SE",
        )
        counted = {"attempts": 1, "pending": 1, "spend_micros": 4000, "pending_spend_micros": 4000}
        settled = {"pending": -1, "allowed": 1, "pending_spend_micros": -4000}
        settled["allowed_spend_micros"] = 4000
        queries = [WindowQuery(k, w, m) for k in keys for w, m in KEYS_WINDOWS]  # type: ignore[arg-type]
        found.append(
            (
                CounterDeltas(keys, bucket, counted),
                Reads(queries, now),
                CounterDeltas(keys, bucket, settled),
            )
        )
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(args.app_dir))
    from datetime import UTC, datetime

    from sqlalchemy import create_engine

    from app.store import counters
    from app.store.migrate import upgrade
    from app.store.thread_connection import ThreadConnection, drive

    store = counters.SqlCounters(60)
    now = datetime.now(UTC)
    attempts = _attempts(args.warm + args.count, store.clock.bucket(now), now)

    def batch(sync: Any, chunk: list[tuple[Any, Any, Any]]) -> None:
        sync.exec_driver_sql("BEGIN IMMEDIATE")
        conn: Any = ThreadConnection(sync)
        for change, reads, settle in chunk:
            drive(store.observe(conn, [change], reads, version=None))
            drive(counters.settle(conn, settle))
        conn.flush()
        sync.commit()

    with tempfile.TemporaryDirectory(prefix="vg-count-cost-") as tmp:
        path = Path(tmp) / "count.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        engine = create_engine(f"sqlite:///{path}")
        with engine.connect() as sync:
            sync.exec_driver_sql("PRAGMA journal_mode=WAL")
            sync.exec_driver_sql("PRAGMA synchronous=NORMAL")
            chunks = [attempts[i : i + args.batch] for i in range(0, len(attempts), args.batch)]
            warm = args.warm // args.batch
            for chunk in chunks[:warm]:
                batch(sync, chunk)
            started = time.process_time()
            for chunk in chunks[warm:]:
                batch(sync, chunk)
            cpu = time.process_time() - started
        engine.dispose()
    return {"app_dir": str(args.app_dir), "cpu_us_per_attempt": round(cpu / args.count * 1e6, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--warm", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--app-dir", type=Path, default=Path(__file__).resolve().parents[1])
    print(json.dumps(run(parser.parse_args(argv))), flush=True)


if __name__ == "__main__":
    main()
