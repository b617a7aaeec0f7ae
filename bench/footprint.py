"""`python -m bench.footprint`: what each callback adds to the database, load-independently.

A fresh PostgreSQL database, VerifyGuard serving it, the soak's traffic (bench/soak.py:
request events, each allowed one followed by its receipt and result) for --warm-minutes,
then a CHECKPOINT, then --minutes more at the same rate. Over the second phase only, per
1,000 callbacks sent: the bytes each table and index grew by (pg_relation_size), the WAL
bytes and full-page images the database wrote (pg_walinspect, by relation: the first change
of each page after the checkpoint is a full-page image, as in a long run), and the share
of `verifications` updates that were HOT. Per callback, not per second: the machine's
speed changes how many are sent, not what each costs (unless the server falls behind).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from app.store.migrate import upgrade
from bench import procs, soak_profile
from bench.run import ROOT, postgres_database, verifyguard
from bench.soak import drive

SIZES_SQL = """
SELECT c.relname, pg_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 'i', 't')
"""
TOAST_SQL = """
SELECT t.relname AS toast, c.relname AS owner FROM pg_class c JOIN pg_class t
ON t.oid = c.reltoastrelid WHERE c.relnamespace = 'public'::regnamespace
"""
HOT_SQL = """
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'verifications'
"""
CHECKPOINTS_SQL = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"


async def _sizes(conn: Any) -> dict[str, int]:
    owners = {r["toast"]: r["owner"] for r in await conn.fetch(TOAST_SQL)}
    found: dict[str, int] = {}
    for r in await conn.fetch(SIZES_SQL):
        name = r["relname"]
        if name in owners or name.startswith("pg_toast_"):
            name = f"toast({owners.get(name, name)})"
        found[name] = found.get(name, 0) + int(r["bytes"])
    return found


async def _hot(conn: Any) -> tuple[int, int]:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    row = await conn.fetchrow(HOT_SQL)
    return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])


async def _read_wal(dsn: str, done: asyncio.Event) -> tuple[dict[str, list[int]], int]:
    """The database's WAL by relation from now until `done`. A temporary physical slot on
    the side connection keeps that WAL from removal by checkpoints (other databases' too)
    until it is read, once, at the end; the slot goes with the connection."""
    reader = await soak_profile.wal_open(dsn)
    try:
        await reader.side.execute(
            "SELECT pg_create_physical_replication_slot($1, true, true)",
            f"vg_footprint_{reader.oid}",
        )
        reader.since = str(await reader.side.fetchval("SELECT pg_current_wal_flush_lsn()::text"))
        await done.wait()
        return await soak_profile.wal_read(reader)
    finally:
        await soak_profile.wal_close(reader)


async def measure(port: int, pid: int, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    common = {"rate": args.rate, "connections": args.connections, "drain_seconds": 60.0}
    warm = await drive(port, pid, minutes=args.warm_minutes, **common)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
        before, hot0 = await _sizes(conn), await _hot(conn)
        checkpoints0 = await conn.fetchval(CHECKPOINTS_SQL)
        done = asyncio.Event()
        reading = asyncio.create_task(_read_wal(dsn, done))
        run = await drive(port, pid, minutes=args.minutes, **common)
        await asyncio.sleep(2.0)  # the server's last batch committed
        done.set()
        wal, skipped = await reading
        after, hot1 = await _sizes(conn), await _hot(conn)
        checkpoints = await conn.fetchval(CHECKPOINTS_SQL) - checkpoints0
    finally:
        await conn.close()
    sent = sum(run.sent.values())
    per = 1000 / max(1, sent)
    grown = {k: round((after.get(k, 0) - before.get(k, 0)) * per) for k in after}
    ours = {k: v for k, v in wal.items() if not k.startswith("(")}
    updates, hot = hot1[0] - hot0[0], hot1[1] - hot0[1]
    return {
        "warm_sent": warm.sent,
        "sent": run.sent,
        "unsent": warm.unsent + run.unsent,
        "checkpoints_during": int(checkpoints),
        "wal_skipped_bytes": skipped,
        "bytes_per_1000": {k: v for k, v in sorted(grown.items(), key=lambda kv: -kv[1]) if v},
        "bytes_per_1000_total": sum(grown.values()),
        "wal_per_1000": {
            k: [round(v[0] * per), round(v[1] * per), round(v[2] * per), round(v[3] * per)]
            for k, v in sorted(ours.items(), key=lambda kv: -kv[1][2])
        },
        "wal_bytes_per_callback": round(sum(v[2] for v in ours.values()) / max(1, sent)),
        "fpi_bytes_per_callback": round(sum(v[3] for v in ours.values()) / max(1, sent)),
        "fpis_per_1000": round(sum(v[1] for v in ours.values()) * per),
        "verification_updates": updates,
        "hot_share": round(hot / updates, 3) if updates else None,
    }


def render(found: dict[str, Any]) -> str:
    lines = [
        f"sent {found['sent']} (after {found['warm_sent']}; unsent {found['unsent']}),"
        f" checkpoints during {found['checkpoints_during']},"
        f" WAL skipped {found['wal_skipped_bytes']} B",
        f"tables+indexes: {found['bytes_per_1000_total']:,} B per 1,000 callbacks",
    ]
    lines += [f"  {k:<48} {v:>10,}" for k, v in found["bytes_per_1000"].items()]
    lines.append(
        f"WAL: {found['wal_bytes_per_callback']:,} B per callback, of which full-page images"
        f" {found['fpi_bytes_per_callback']:,} B ({found['fpis_per_1000']} FPIs per 1,000)"
    )
    lines.append("  relation (per 1,000 callbacks)           records   FPIs      bytes  FPI bytes")
    for k, v in list(found["wal_per_1000"].items())[:14]:
        lines.append(f"  {k:<40} {v[0]:>7} {v[1]:>6} {v[2]:>10,} {v[3]:>10,}")
    lines.append(
        f"verifications updates: {found['verification_updates']}, HOT {found['hot_share']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-prefix", default="vg_bench_", help="of the database created")
    parser.add_argument("--rate", type=float, default=150.0, help="request events per second")
    parser.add_argument("--warm-minutes", type=int, default=1)
    parser.add_argument("--minutes", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="vg-footprint-") as tmp,
        postgres_database(args.postgres, prefix=args.db_prefix) as dsn,
    ):
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        target = verifyguard(url, "postgres")
        port, workdir = procs.free_port(), Path(tmp)
        with procs.uvicorn_server(
            target.factory,
            port=port,
            env=target.env,
            log=workdir / "server.log",
            cwd=workdir,
            app_dir=ROOT,
        ) as server:
            found = asyncio.run(measure(port, server.pid, dsn, args))
    if args.json:
        args.json.write_text(json.dumps(found))
    print(render(found), file=sys.stderr)


if __name__ == "__main__":
    main()
