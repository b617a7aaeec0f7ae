"""`python -m bench.soak --profile DIR`: where the soak's server spends each minute.

The server is started with bench/loop_watch.py loaded (by an absolute PYTHONPATH entry, so
its sitecustomize is found from the server's temporary working directory, and an absolute
output path that outlives that directory). Its 5-second bins are put in the soak's own
minutes: loop CPU, steps over 5 ms and what ran in them, the CPU of the periodic tasks,
collections per generation, and the statements' calls, rows and time. The soak's database
is read at the end of every minute for its tables' scans and buffer hits (pg_stat_statements
needs a server-wide preload; these do not). All of these are counted within one run, minute
against minute, so they do not depend on what else the machine runs the way latencies do.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench import procs
from bench.run import ROOT

SITE = ROOT / "bench" / "loop_watch_site"

TABLE_SQL = """
SELECT s.relname, s.seq_scan, s.seq_tup_read, coalesce(s.idx_scan, 0) AS idx_scan,
       coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch, s.n_tup_ins, s.n_tup_upd, s.n_tup_del,
       s.n_live_tup, s.n_dead_tup,
       coalesce(io.heap_blks_hit, 0) + coalesce(io.idx_blks_hit, 0) AS blks_hit,
       coalesce(io.heap_blks_read, 0) + coalesce(io.idx_blks_read, 0) AS blks_read,
       s.autovacuum_count + s.autoanalyze_count AS auto,
       s.vacuum_count + s.autovacuum_count AS vacuums, s.n_tup_hot_upd,
       coalesce(io.toast_blks_hit, 0) + coalesce(io.tidx_blks_hit, 0) AS toast_hit,
       coalesce(io.toast_blks_read, 0) + coalesce(io.tidx_blks_read, 0) AS toast_read,
       pg_relation_size(s.relid) / 8192 AS heap_pages,
       pg_indexes_size(s.relid) / 8192 AS index_pages,
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) / 8192 AS toast_pages
FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid)
JOIN pg_class c ON c.oid = s.relid
"""
DELTAS: tuple[str, ...] = (
    "seq_scan",
    "seq_tup_read",
    "idx_scan",
    "idx_tup_fetch",
    "n_tup_ins",
    "n_tup_upd",
)
DELTAS += ("n_tup_del", "blks_hit", "blks_read", "auto", "n_tup_hot_upd", "toast_hit")
DELTAS += ("toast_read", "vacuums")
SIZES = ("n_live_tup", "n_dead_tup", "heap_pages", "index_pages", "toast_pages")
# Server-wide (PostgreSQL 15 has no per-database WAL or I/O counts: other databases' writes
# are in these too): WAL records, full-page images and bytes, checkpoints, and who wrote
# dirty buffers out (the checkpointer, the background writer, or backends themselves when
# no clean buffer was left: shared_buffers outgrown).
CLUSTER_SQL = """
SELECT w.wal_records, w.wal_fpi, w.wal_bytes, w.wal_buffers_full,
       b.checkpoints_timed + b.checkpoints_req AS checkpoints, b.buffers_checkpoint,
       b.buffers_clean, b.buffers_backend, b.buffers_alloc,
       (b.checkpoint_write_time + b.checkpoint_sync_time)::bigint AS checkpoint_ms,
       d.blks_read AS db_blks_read, d.blks_hit AS db_blks_hit, d.xact_commit AS db_commits,
       pg_database_size(current_database()) / 8192 AS db_pages
FROM pg_stat_wal w, pg_stat_bgwriter b, pg_stat_database d
WHERE d.datname = current_database()
"""
CLUSTER = "_cluster"  # not a table: the server-wide counters above
CPU = "_backend_cpu"  # not a table: pid -> CPU seconds


def server_env(out: Path) -> dict[str, str]:
    import os

    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "VERIFYGUARD_LOOP_WATCH": str(out.resolve() / "watch")}


BACKENDS_SQL = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


async def tables(conn: Any) -> dict[str, Any]:
    """The tables' cumulative statistics, and the CPU seconds of each of the database's
    backends (the server's connections) so far."""
    rows = await conn.fetch(TABLE_SQL)
    out: dict[str, Any] = {r["relname"]: {k: int(r[k]) for k in (*DELTAS, *SIZES)} for r in rows}
    out[CLUSTER] = {k: int(v) for k, v in (await conn.fetchrow(CLUSTER_SQL)).items()}
    out[CPU] = {row["pid"]: procs.cpu_seconds(row["pid"]) for row in await conn.fetch(BACKENDS_SQL)}
    return out


def _minutes(bins: dict[str, Any], started: float, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"steps": 0, "cpu_ms": 0.0, "long": 0, "long_cpu_ms": 0.0, "tasks": Counter(),
         "long_what": Counter(), "gc": defaultdict(lambda: [0, 0.0, 0.0]), "sql": {},
         "sizes": [0] * 6}
        for _ in range(count)
    ]  # fmt: skip
    for key, b in bins.items():
        index = int((int(key) + 2.5 - started) // 60)  # a bin by its middle
        if not 0 <= index < count:
            continue
        m = out[index]
        for name in ("steps", "cpu_ms", "long", "long_cpu_ms"):
            m[name] += b[name]
        m["sizes"] = [a + b for a, b in zip(m["sizes"], b.get("sizes", [0] * 6), strict=True)]
        m["tasks"].update(b["tasks"])
        m["long_what"].update(b["long_what"])
        for gen, (n, cpu, top) in b["gc"].items():
            g = m["gc"][gen]
            g[0], g[1], g[2] = g[0] + n, g[1] + cpu, max(g[2], top)
        for text, (n, ms, rows, top) in b["sql"].items():
            e = m["sql"].setdefault(text, [0, 0.0, 0, 0.0])
            e[0], e[1], e[2], e[3] = e[0] + n, e[1] + ms, e[2] + rows, max(e[3], top)
    return out


def report(
    out: Path,
    pid: int,
    started: float,
    count: int,
    snapshots: list[dict[str, Any]],
    wal: list[tuple[dict[str, list[int]], int]] | None = None,
) -> dict[str, Any]:
    """The per-minute profile (JSON-able) from the server's watch file and the snapshots of
    the database's tables taken at the start and the end of every minute."""
    path = out / f"watch.{pid}"
    data = json.loads(path.read_text()) if path.exists() else {"bins": {}}
    minutes = _minutes(data["bins"], started, count)
    tails = tail(path.with_name(path.name + ".requests"), data, started, count)
    result = []
    for index, m in enumerate(minutes):
        sql = sorted(m["sql"].items(), key=lambda kv: -kv[1][1])
        row: dict[str, Any] = {
            "minute": index + 1,
            "loop_cpu_s": round(m["cpu_ms"] / 1000, 2),
            "steps_over_5ms": m["long"],
            "their_cpu_ms": round(m["long_cpu_ms"]),
            # Steps by CPU: < 1, 1-2, 2-5, 5-10, 10-20, >= 20 ms (bench/loop_watch.py).
            "step_sizes": m["sizes"],
            "long_what": m["long_what"].most_common(5),
            "task_cpu_ms": {k: round(v) for k, v in m["tasks"].most_common(8)},
            "gc": {g: [n, round(c), round(t, 1)] for g, (n, c, t) in sorted(m["gc"].items())},
            "sql": [
                {"calls": n, "mean_ms": round(ms / n, 2), "max_ms": round(top, 1),
                 "rows_per_call": round(rows / n, 1), "total_ms": round(ms), "text": text}
                for text, (n, ms, rows, top) in sql[:12]
            ],
        }  # fmt: skip
        if tails[index]:
            row["tail"] = tails[index]
        if index + 1 < len(snapshots):
            before, after = snapshots[index], snapshots[index + 1]
            used = after[CPU]
            row["postgres_cpu_s"] = round(
                sum(cpu - before[CPU].get(pid, 0.0) for pid, cpu in used.items()), 2
            )
            row["tables"] = {
                name: {k: v[k] - before.get(name, {}).get(k, 0) for k in DELTAS}
                | {k: v[k] for k in SIZES}
                for name, v in after.items()
                if name not in (CPU, CLUSTER)
                and any(v[k] - before.get(name, {}).get(k, 0) for k in DELTAS)
            }
            if CLUSTER in after and CLUSTER in before:
                now, then = after[CLUSTER], before[CLUSTER]
                row["cluster"] = {k: v - then[k] for k, v in now.items() if k != "db_pages"}
                row["cluster"]["db_pages"] = now["db_pages"]
        if wal is not None and index < len(wal):
            row["wal"] = wal_summary(*wal[index])
        result.append(row)
    return {"minutes": result, "gc_totals": data.get("gc"), "long_steps": data.get("long_steps")}


# A callback's stages (bench/loop_watch.py, VERIFYGUARD_LOOP_WATCH_REQUESTS=1): per batcher,
# [waited for its batch to start, its batch's write, waited after it for its turn, its
# batch's size, whether a batch was in flight when it was submitted, items queued then].
STAGES = ("count-batches", "store-batches")


def tail(
    path: Path, data: dict[str, Any], started: float, count: int
) -> list[dict[str, Any] | None]:
    """Per soak minute, the request events' time in the server (ASGI call to answer) and
    where it went: the mean stages of the answers at the median (45-55 %) and of the
    slowest 1 %: each batch's wait to start, write and wait after, what ran on the loop
    for the request itself (`own_cpu`), and the rest (the loop's turns it waited for)."""
    out: list[list[list[Any]]] = [[] for _ in range(count)]
    if not path.exists() or "started_wall" not in data:
        return [None] * count
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if STAGES[0] not in record[5]:
            continue  # receipts and results
        index = int((data["started_wall"] + record[0] - started) // 60)
        if 0 <= index < count:
            out[index].append(record)
    return [_tail(sorted(records, key=lambda r: r[1])) if records else None for records in out]


def _tail(records: list[list[Any]]) -> dict[str, Any]:
    n = len(records)

    def band(chosen: list[list[Any]]) -> dict[str, Any]:
        def mean(values: list[float]) -> float:
            return round(sum(values) / max(1, len(values)), 2)

        row: dict[str, Any] = {"n": len(chosen), "total": mean([r[1] for r in chosen])}
        staged = 0.0
        for stage in STAGES:
            short = stage.split("-")[0]
            parts = [r[5].get(stage) or [0] * 6 for r in chosen]
            for i, part in enumerate(("wait", "write", "after")):
                row[f"{short}_{part}"] = mean([p[i] for p in parts])
                staged += row[f"{short}_{part}"]
            row[f"{short}_size"] = mean([p[3] for p in parts])
        row["own_cpu"] = mean([r[2] for r in chosen])
        row["rest"] = round(row["total"] - staged, 2)
        return row

    return {
        "n": n,
        "p50_ms": records[n // 2][1],
        "p99_ms": records[int(0.99 * (n - 1))][1],
        "over_20ms": sum(1 for r in records if r[1] > 20),
        "median": band(records[int(0.45 * n) : int(0.55 * n) + 1]),
        "top_1pct": band(records[int(0.99 * n) :]),
    }


def render(profile: dict[str, Any]) -> str:
    lines = []
    for m in profile["minutes"]:
        lines.append(
            f"--- minute {m['minute']}: loop CPU {m['loop_cpu_s']} s, its database's backends'"
            f" CPU {m.get('postgres_cpu_s')} s, steps > the watch's STEP_MS "
            f"{m['steps_over_5ms']} ({m['their_cpu_ms']} ms), gc [n, ms, max] {m['gc']}"
        )
        lines.append(f"  steps by CPU (<1, 1-2, 2-5, 5-10, 10-20, >=20 ms): {m['step_sizes']}")
        lines.append(f"  tasks CPU ms: {m['task_cpu_ms']}")
        lines.append(f"  long steps: {m['long_what']}")
        for s in m["sql"]:
            lines.append(
                f"  sql {s['calls']:>6} x {s['mean_ms']:>6} ms (max {s['max_ms']:>6})"
                f" {s['rows_per_call']:>6} rows  {s['text']}"
            )
        if "tail" in m:
            t = m["tail"]
            lines.append(
                f"  request events in the server: {t['n']}, p50 {t['p50_ms']} ms, p99"
                f" {t['p99_ms']} ms, over 20 ms {t['over_20ms']}; stages, mean ms:"
            )
            for band in ("median", "top_1pct"):
                lines.append(f"    {band}: {t[band]}")
        if "wal" in m:
            lines.append(f"  WAL of the soak's database: {m['wal']}")
        if "cluster" in m:
            lines.append(f"  server-wide: {m['cluster']}")
        for name, t in m.get("tables", {}).items():
            lines.append(f"  table {name}: {t}")
    return "\n".join(lines)


# The soak database's share of the WAL, read back with pg_walinspect (PostgreSQL 15 keeps
# no per-database WAL counts): every record's first block names its database and relation;
# records of other databases, and those without a block (commits), are summed apart. Read
# every 10 s from where the last read stopped (or the last checkpoint's redo point, if a
# checkpoint removed that WAL first). Read from a side database (`<soak database>_wal`,
# dropped after): a read of a few hundred MB of WAL takes seconds, and a statement running
# that long in the soak's own database holds back its pruning horizon, so that no dead
# version of a hot counter row could be pruned meanwhile (a first version read from there
# made the very dead-tuple growth it was meant to observe).
WAL_SQL = r"""
WITH w AS (
    SELECT (regexp_match(block_ref, 'rel \d+/(\d+)/(\d+)')) AS m, record_length, fpi_length
    FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
)
SELECT CASE WHEN w.m IS NULL THEN -1 WHEN w.m[1]::oid <> $3::oid THEN -2
            ELSE w.m[2]::bigint END AS rel,
       count(*) AS records, count(*) FILTER (WHERE w.fpi_length > 0) AS fpis,
       sum(w.record_length) AS bytes, sum(w.fpi_length) AS fpi_bytes
FROM w GROUP BY 1
"""
WAL_EDGE_SQL = (
    "SELECT pg_current_wal_flush_lsn()::text AS now,"
    " (pg_control_checkpoint()).redo_lsn::text AS redo"
)
NAMES_SQL = "SELECT relfilenode::bigint AS node, relname FROM pg_class WHERE relfilenode <> 0"
SPECIAL = {-1: "(no block)", -2: "(other databases)"}


@dataclass(slots=True)
class WalReader:
    side: Any  # a connection to the side database
    soak: Any  # a connection to the soak database, for the relations' names
    oid: int
    since: str


async def wal_open(dsn: str) -> WalReader:
    soak = await asyncpg.connect(dsn)
    name = await soak.fetchval("SELECT current_database()")
    await soak.execute(f'DROP DATABASE IF EXISTS "{name}_wal"')
    await soak.execute(f'CREATE DATABASE "{name}_wal"')
    side = await asyncpg.connect(dsn.rsplit("/", 1)[0] + f"/{name}_wal")
    await side.execute("CREATE EXTENSION pg_walinspect")
    oid = await soak.fetchval("SELECT oid::bigint FROM pg_database WHERE datname = $1", name)
    since = str(await side.fetchval("SELECT pg_current_wal_flush_lsn()::text"))
    return WalReader(side, soak, int(oid), since)


async def wal_close(reader: WalReader) -> None:
    await reader.side.close()
    name = await reader.soak.fetchval("SELECT current_database()")
    await reader.soak.execute(f'DROP DATABASE IF EXISTS "{name}_wal"')
    await reader.soak.close()


async def wal_read(reader: WalReader) -> tuple[dict[str, list[int]], int]:
    """Per relation [records, FPIs, bytes, FPI bytes] of the WAL since the last read, and
    how many bytes of WAL were skipped (removed by a checkpoint before they were read: then
    read from its redo point)."""
    conn = reader.side
    edge = await conn.fetchrow(WAL_EDGE_SQL)
    now, skipped = str(edge["now"]), 0
    try:
        rows = await conn.fetch(WAL_SQL, reader.since, now, reader.oid)
    except asyncpg.PostgresError:  # a segment removed by a checkpoint
        redo = str(edge["redo"])
        skipped = int(
            await conn.fetchval("SELECT $2::text::pg_lsn - $1::text::pg_lsn", reader.since, redo)
        )
        rows = await conn.fetch(WAL_SQL, redo, now, reader.oid)
    reader.since = now
    names = {r["node"]: r["relname"] for r in await reader.soak.fetch(NAMES_SQL)}
    found: dict[str, list[int]] = {}
    for r in rows:
        rel = SPECIAL.get(r["rel"]) or names.get(r["rel"], str(r["rel"]))
        wal_add(
            found, {rel: [int(r["records"]), int(r["fpis"]), int(r["bytes"]), int(r["fpi_bytes"])]}
        )
    return found, skipped


def wal_add(into: dict[str, list[int]], found: dict[str, list[int]]) -> None:
    for rel, values in found.items():
        into[rel] = [a + b for a, b in zip(into.get(rel, [0, 0, 0, 0]), values, strict=True)]


def wal_summary(wal: dict[str, list[int]], skipped: int) -> dict[str, Any]:
    """The soak database's records, FPIs and MB, its top relations by bytes, and the rest."""
    ours = {k: v for k, v in wal.items() if not k.startswith("(")}
    total = [sum(v[i] for v in ours.values()) for i in range(4)]
    top = sorted(ours.items(), key=lambda kv: -kv[1][2])[:8]
    mb = 1024 * 1024
    return {
        "records": total[0], "fpis": total[1], "mb": round(total[2] / mb, 1),
        "fpi_mb": round(total[3] / mb, 1),
        "top": {k: [v[0], v[1], round(v[2] / mb, 1)] for k, v in top},
        "others_mb": {k: round(v[2] / mb, 1) for k, v in wal.items() if k.startswith("(")},
        "skipped_mb": round(skipped / mb, 1),
    }  # fmt: skip
