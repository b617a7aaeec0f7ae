"""`python -m bench.batch_cost`: the CPU the group commit's two statements cost on PostgreSQL,
without HTTP, logging or the rest of the request path.

On a fresh database: --count starter-policy decisions of legit numbers, stored with
store/pg_batch_store.store_batch, and --count attempts counted with
store/pg_batch_count.count_batch, in batches of --batch, one after another on one
connection. Reports per 1,000 events the client's CPU (this process: building the
parameters, asyncpg encoding them, reading the rows) and the PostgreSQL backend's CPU (from
/proc), for each of --rounds rounds. Both are CPU time, not wall clock: run an old and a
new checkout alternately (`cd old && python -m bench.batch_cost`) to compare them on a
loaded machine. With --wal, also each stage's WAL records and bytes (full-page images
left out) per event in the bench's database, by relation (pg_walinspect, read from a side
database: bench/soak_profile.py); --private-postgres runs on a private cluster
(bench/pg_cluster.py) that keeps its WAL, so that no checkpoint of another database removes
it before it is read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.engine import CompiledPolicy, compile_policy, evaluate
from app.rules.facts import Facts, derive_facts
from app.rules.starter import starter_policy
from app.services.aggregates import plan, spec_values
from app.services.intake.deliveries import Delivery
from app.services.intake.records import callback_row, decision_json, match_rows, request_row
from app.simulator.catalog import LEGIT, pick
from app.sinch import samples
from app.sinch.events import REQUEST_EVENT, VerificationRequestEvent
from app.store.base import create_engine
from app.store.counter_model import BucketClock, Reads
from app.store.migrate import upgrade
from app.store.pg_batch_count import CountItem, count_batch
from app.store.pg_batch_store import StoreItem, store_batch
from app.store.pg_fastpath import policy_version
from bench import pg_cluster, procs
from bench.run import postgres_database
from bench.soak_profile import WalReader, wal_close, wal_open, wal_read

CLOCK = BucketClock(60)


def _facts(rng: random.Random, now: datetime) -> tuple[VerificationRequestEvent, bytes, Facts]:
    span = pick(rng, LEGIT)
    wire = samples.request_event(
        number=span.number(rng), verification_id=str(uuid.uuid4()), price=span.price
    )
    event = VerificationRequestEvent.model_validate(wire)
    price = event.price
    facts = derive_facts(
        method=event.method,
        endpoint=event.identity.endpoint,
        price_amount=price.amount if price else None,
        price_currency=price.currency_id if price else None,
        rate_amount=None,
        rate_currency=None,
        reference=event.reference,
        custom=event.custom,
        application="bench",
        now=now,
    )
    return event, json.dumps(wire).encode(), facts


def store_items(rng: random.Random, compiled: CompiledPolicy, count: int) -> list[StoreItem]:
    """Decided request events as the request path hands them to the store."""
    now, items = datetime.now(UTC), []
    for _ in range(count):
        event, body, facts = _facts(rng, now)
        wanted, attempt = plan(compiled, facts, CLOCK)
        facts = facts.with_aggregates(spec_values(wanted, dict.fromkeys(wanted, 1), attempt))
        decision = evaluate(compiled, facts)
        delivery = Delivery(body, "application/json", "bench", now)
        dedupe = f"{REQUEST_EVENT}:{event.id}"
        claim = callback_row(delivery, 200, event=REQUEST_EVENT, verification_id=event.id)
        claim.dedupe_key = dedupe
        row = request_row(
            event, delivery, facts, decision, {"action": decision.action},
            callback_id=None, elapsed_ms=1.0, document=False,
        )  # fmt: skip
        settle = attempt.settled(allowed=decision.action == "allow")
        shadow = match_rows(event.id, decision, now)
        encoded = decision_json(decision, facts)
        items.append(StoreItem(claim, row, shadow, settle, decision_json=encoded))
    return items


def count_items(
    rng: random.Random, compiled: CompiledPolicy, count: int, version: int
) -> list[CountItem]:
    """Attempts as the request path hands them to the counting batch."""
    now, items = datetime.now(UTC), []
    for _ in range(count):
        _, _, facts = _facts(rng, now)
        wanted, attempt = plan(compiled, facts, CLOCK)
        items.append(CountItem(attempt.counted(), Reads(list(wanted), now), version))
    return items


async def _timed(
    conn: AsyncConnection, pid: int, batches: Sequence[Sequence[Any]], write: Callable[..., Any]
) -> tuple[float, float]:
    cpu0, backend0 = time.process_time(), procs.cpu_seconds(pid)
    for batch in batches:
        await write(conn, batch)
    return time.process_time() - cpu0, procs.cpu_seconds(pid) - backend0


async def _wal(reader: WalReader | None, count: int) -> dict[str, Any]:
    """The WAL since the last read, per event: records and bytes (no full-page images) in
    all, and the records of each relation that wrote at least 0.05 per event."""
    if reader is None:
        return {}
    found, _ = await wal_read(reader)
    ours = {name: v for name, v in found.items() if not name.startswith("(")}
    by = sorted(((v[0] / count, name) for name, v in ours.items()), reverse=True)
    return {
        "wal_records": round(sum(v[0] for v in ours.values()) / count, 2),
        "wal_bytes": round(sum(v[2] - v[3] for v in ours.values()) / count),
        "wal_records_by": {name: round(n, 2) for n, name in by if n >= 0.05},
    }


async def counted(conn: AsyncConnection, batch: Sequence[CountItem]) -> None:
    """One counting batch, as `_timed` runs a stage's batches."""
    await count_batch(conn, CLOCK, batch)


@asynccontextmanager
async def measured_connection(
    engine: AsyncEngine,
) -> AsyncIterator[tuple[AsyncConnection, int, int]]:
    """A connection of `engine`, its backend's pid (whose CPU `_timed` reads from /proc)
    and the live policy version (the counting items are planned under it)."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pid = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
        yield conn, pid, await policy_version(conn)


async def _measure(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(17)  # noqa: S311 - load shape, not secrets
    compiled = compile_policy(starter_policy(), version=1)
    engine = create_engine(url, autocommit=True)
    reader = await wal_open(args.dsn) if args.wal else None
    rows = []
    try:
        async with measured_connection(engine) as (conn, pid, version):
            for round_ in range(args.rounds + 1):  # the first warms up
                stores = store_items(rng, compiled, args.count)
                counts = count_items(rng, compiled, args.count, version)
                size = args.batch
                await _wal(reader, 1)  # from here
                store = await _timed(
                    conn, pid, [stores[i : i + size] for i in range(0, len(stores), size)],
                    store_batch,
                )  # fmt: skip
                store_wal = await _wal(reader, args.count)
                count = await _timed(
                    conn, pid, [counts[i : i + size] for i in range(0, len(counts), size)],
                    counted,
                )  # fmt: skip
                count_wal = await _wal(reader, args.count)
                if round_:
                    per = 1000 / args.count
                    rows.append(
                        {
                            "store_client_cpu_s_per_1000": round(store[0] * per, 4),
                            "store_backend_cpu_s_per_1000": round(store[1] * per, 4),
                            "count_client_cpu_s_per_1000": round(count[0] * per, 4),
                            "count_backend_cpu_s_per_1000": round(count[1] * per, 4),
                            **{f"store_{k}": v for k, v in store_wal.items()},
                            **{f"count_{k}": v for k, v in count_wal.items()},
                        }
                    )
    finally:
        if reader is not None:
            await wal_close(reader)
        await engine.dispose()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_")
    parser.add_argument("--count", type=int, default=3200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wal", action="store_true", help="also WAL per event (pg_walinspect)")
    parser.add_argument("--private-postgres", action="store_true", help="on a private cluster")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        if args.private_postgres:
            args.postgres = stack.enter_context(pg_cluster.private_cluster(PRIVATE))
        _run(args)


PRIVATE = {"wal_keep_size": "4GB", "max_wal_size": "8GB", "checkpoint_timeout": "1h"}
"""The private cluster's settings: its WAL kept for a run's reads."""


def _run(args: argparse.Namespace) -> None:
    with postgres_database(args.postgres, prefix=args.db_prefix) as dsn:
        args.dsn = dsn
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        for row in asyncio.run(_measure(url, args)):
            print(json.dumps({"batch": args.batch, **row}))


if __name__ == "__main__":
    main()
