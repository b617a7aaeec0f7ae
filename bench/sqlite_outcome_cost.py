"""`python -m bench.sqlite_outcome_cost [--app-dir DIR]`: the writer's CPU and statements
per result and per SMS-delivered receipt on SQLite.

What the SQLite writer runs for those callbacks (services/intake/outcomes.py through
store/group_commit.py), without the app around it: on a fresh migrated SQLite file with
the starter policy and --count decided verifications, batches of --batch callbacks (one
transaction each, as a group commit runs them on a `ThreadConnection`): for each
verification its receipt, then its result (SUCCESSFUL for 4 in 5, credited to its
counters). Reports process CPU microseconds and statements (the engine's
`before_cursor_execute`, BEGIN and COMMIT not counted) per callback, after --warm. One
thread, no server, no event loop: the figure moves little with the machine's load, so two
versions compare well (`--app-dir` serves another checkout's `app`: run them alternately).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def _seed(path: Path, count: int, now: datetime) -> list[tuple[str, str]]:
    """`count` decided, still pending verifications: (id, number)."""
    import sqlite3

    rng = random.Random(17)  # noqa: S311 - load shape, not secrets
    rows = []
    for _ in range(count):
        number = f"+4670{rng.randrange(10**7):07d}"
        rows.append((str(uuid.UUID(int=rng.getrandbits(128), version=4)), number))
    at = (now - timedelta(seconds=5)).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO verifications (id, created_at, app_key, method, number, country,"
        " calling_code, requested_at, status, action, reason, decided_by, shadow_deny,"
        " degraded) VALUES (?, ?, 'bench', 'sms', ?, 'SE', 46, ?, 'PENDING', 'allow',"
        " 'default', 'default', 0, 0)",
        [(ident, at, number, at) for ident, number in rows],
    )
    db.commit()
    db.close()
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(args.app_dir))
    from sqlalchemy import create_engine, event

    from app.services.aggregates import Aggregator
    from app.services.intake.deliveries import Delivery
    from app.services.intake.outcomes import Outcomes
    from app.services.policy.cache import PolicyCache
    from app.services.policy.starter import install_starter_policy
    from app.sinch import samples
    from app.sinch.events import VerificationResultEvent, VerificationSmsDeliveredEvent
    from app.store.base import create_engine as create_async_engine
    from app.store.counters import SqlCounters
    from app.store.migrate import upgrade
    from app.store.thread_connection import ThreadConnection, awaited, drive

    class OnBatch:
        """A Scope whose work runs on the batch's connection (as group_commit's `run`)."""

        conn: Any = None

        async def run(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
            return await work(self.conn)

        async def close(self) -> None:
            return None

    now = datetime.now(UTC)
    total = args.warm + args.count
    scope = OnBatch()
    outcomes = Outcomes(
        writes=scope,
        credit=None,
        policies=PolicyCache(default_action="allow", timezone="UTC"),
        aggregator=Aggregator(SqlCounters(60)),
    )
    rng = random.Random(5)  # noqa: S311

    def callbacks(rows: list[tuple[str, str]]) -> list[Any]:
        made: list[Any] = []
        for ident, number in rows:
            receipt = samples.delivered_event(verification_id=ident, number=number)
            status = "SUCCESSFUL" if rng.random() < 0.8 else "FAIL"
            result = samples.result_event(verification_id=ident, number=number, status=status)
            for payload, model in (
                (receipt, VerificationSmsDeliveredEvent),
                (result, VerificationResultEvent),
            ):
                body = json.dumps(payload).encode()
                delivery = Delivery(body, "application/json", "bench", now)
                made.append((delivery, model.model_validate(payload)))
        return made

    def batch(sync: Any, chunk: list[Any]) -> None:
        sync.exec_driver_sql("BEGIN IMMEDIATE")
        scope.conn = ThreadConnection(sync)
        for delivery, parsed in chunk:
            store = outcomes.result if parsed.event.endswith("ResultEvent") else outcomes.delivered
            drive(awaited(store(delivery, parsed)))
        scope.conn.flush()
        sync.commit()

    statements = 0
    with tempfile.TemporaryDirectory(prefix="vg-outcome-cost-") as tmp:
        path = Path(tmp) / "outcome.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        installer = create_async_engine(url)
        asyncio.run(install_starter_policy(installer, now=now))
        asyncio.run(installer.dispose())
        made = callbacks(_seed(path, total, now))
        engine = create_engine(f"sqlite:///{path}")

        @event.listens_for(engine, "before_cursor_execute")
        def _count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        with engine.connect() as sync:
            sync.exec_driver_sql("PRAGMA journal_mode=WAL")
            sync.exec_driver_sql("PRAGMA synchronous=NORMAL")
            chunks = [made[i : i + args.batch] for i in range(0, len(made), args.batch)]
            warm = 2 * args.warm // args.batch
            for chunk in chunks[:warm]:
                batch(sync, chunk)
            statements = 0
            started = time.process_time()
            for chunk in chunks[warm:]:
                batch(sync, chunk)
            cpu = time.process_time() - started
            found = sync.exec_driver_sql(
                "SELECT count(*) FROM verifications WHERE status IS NOT NULL"
                " AND status != 'PENDING' AND sms_result IS NOT NULL"
            ).scalar()
        engine.dispose()
    done = 2 * args.count
    return {
        "app_dir": str(args.app_dir),
        "cpu_us_per_callback": round(cpu / done * 1e6, 1),
        "statements_per_callback": round(statements / done, 2),
        "verifications_completed": found,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--app-dir", type=Path, default=Path(__file__).resolve().parents[1])
    print(json.dumps(run(parser.parse_args(argv))), flush=True)


if __name__ == "__main__":
    main()
