"""`python -m bench.policy_load`: how long a policy load takes the event loop, whole and
after one list edit, on a fresh PostgreSQL database holding the starter policy with
`--entries` numbers in each of its two lists.

Prints, per step, the milliseconds of `PolicyCache.current` (what the request events in
flight wait for after a change) and how many entries it read: first a whole load, then
`--edits` loads each after one number was added to the blocklist (the lists reused,
services/policy/held_lists.py), then one after an entry's expiry was changed in place (its
list read again whole).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.policy.cache import PolicyCache
from app.store import lists as store
from app.store import policy as policy_store
from app.store.base import create_engine
from app.store.migrate import upgrade
from bench.run import postgres_database


async def _change(engine: AsyncEngine, list_id: int, entry: store.NewEntry) -> None:
    async with engine.begin() as conn:
        await store.upsert_entries(conn, list_id, [entry], now=datetime.now(UTC), actor="bench")
        await policy_store.bump_version(conn, now=datetime.now(UTC), actor="bench")


async def _timed(engine: AsyncEngine, cache: PolicyCache, step: str) -> dict[str, object]:
    read = cache.lists.read
    async with engine.connect() as conn:
        began = time.perf_counter()
        await cache.current(conn)
        seconds = time.perf_counter() - began
    return {"step": step, "ms": round(seconds * 1000, 1), "entries_read": cache.lists.read - read}


async def measure(url: str, entries: int, edits: int, seed: int) -> list[dict[str, object]]:
    engine = create_engine(url)
    rng = random.Random(seed)  # noqa: S311 - sample numbers, not secrets
    ids: dict[str, int] = {}
    try:
        async with engine.begin() as conn:
            for name in ("allowlist", "blocklist"):
                row = await store.list_row(conn, name)
                ids[name] = (
                    row.id
                    if row
                    else await store.create_list(
                        conn, name=name, kind="number", description="", now=datetime.now(UTC)
                    )
                )
                numbers = sorted({f"+46709{rng.randrange(10**6):06d}" for _ in range(entries * 2)})
                rows = [store.NewEntry(value=v, note="", expires_at=None) for v in numbers]
                await store.upsert_entries(
                    conn, ids[name], rows[:entries], now=datetime.now(UTC), actor="bench"
                )
            await policy_store.bump_version(conn, now=datetime.now(UTC), actor="bench")
        cache = PolicyCache(default_action="allow", timezone="UTC")
        rows_out = [await _timed(engine, cache, "whole")]
        for n in range(edits):
            added = store.NewEntry(value=f"+46708{n:06d}", note="", expires_at=None)
            await _change(engine, ids["blocklist"], added)
            rows_out.append(await _timed(engine, cache, "one number added"))
        expiring = store.NewEntry(
            value="+46708000000", note="", expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
        await _change(engine, ids["blocklist"], expiring)
        rows_out.append(await _timed(engine, cache, "an expiry changed"))
        return rows_out
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--entries", type=int, default=20000, help="numbers in each list")
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with postgres_database(args.postgres, "vg_load_") as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        for row in asyncio.run(measure(url, args.entries, args.edits, args.seed)):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
