"""`python -m bench.soak --trace FILE`: the soak second by second, to tell what a minute's
p99 is made of. Per second of the run: the request events scheduled in it (count, p50,
p99, the part from write to reply), what autovacuum was doing in the soak database
(`pg_stat_progress_vacuum` and `_analyze`: table and phase), the server's WAL that second
(`pg_stat_wal`: records, full-page images, bytes, writes, syncs and, with
`track_wal_io_timing`, their time), how the server's client backends of the soak database
were seen waiting (sampled five times a second: `IO:WALSync`, `LWLock:WALWrite`,
`Lock:transactionid`, ...), and the machine's run queue (`procs_running` of /proc/stat,
sampled the same way: above the core count, a process that could run is waiting for a
CPU). Written as JSON lines, one per second, for reading side by side with the minutes.

With `log_autovacuum_min_duration = 0` on a private cluster (`--pg-setting`), each
autovacuum run's own report (its duration, pages, WAL records, full-page images and bytes,
CPU) is read back from the cluster's log at the end and written too (`"vacuum"` lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

WAITS_SQL = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS what, count(*) AS n
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND state = 'active'
  AND application_name <> $1 AND pid <> pg_backend_pid()
GROUP BY 1
"""
SECOND_SQL = """
SELECT w.wal_records, w.wal_fpi, w.wal_bytes, w.wal_write, w.wal_sync, w.wal_write_time,
       w.wal_sync_time
FROM pg_stat_wal w
"""
# autovacuum's work in the soak database as it is seen: `<table>:<phase>` of each VACUUM
# and ANALYZE in progress (an autovacuum worker's VACUUM ANALYZE shows as one, then the other)
PROGRESS_SQL = """
SELECT relid::regclass::text || ':vacuum ' || phase AS what FROM pg_stat_progress_vacuum
WHERE datname = current_database()
UNION ALL
SELECT relid::regclass::text || ':analyze ' || phase FROM pg_stat_progress_analyze
WHERE datname = current_database()
"""
# With pg_stat_statements preloaded (`--pg-setting shared_preload_libraries=pg_stat_statements
# --pg-setting pg_stat_statements.track_planning=on`): the soak database's statements'
# plans (a prepared statement's generic plan is made again after an ANALYZE of its tables
# invalidates it), planning and execution time, per second.
STATEMENTS_SQL = """
SELECT coalesce(sum(plans), 0)::float8 AS plans, coalesce(sum(total_plan_time), 0) AS plan_ms,
       coalesce(sum(calls), 0)::float8 AS calls, coalesce(sum(total_exec_time), 0) AS exec_ms
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
SAMPLES_PER_SECOND = 5
WAL_FIELDS: tuple[str, ...] = ("wal_records", "wal_fpi", "wal_bytes", "wal_write", "wal_sync")
WAL_FIELDS += ("wal_write_time", "wal_sync_time")


@dataclass(slots=True)
class Second:
    latencies: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)
    waits: Counter[str] = field(default_factory=Counter)
    run_queue: list[int] = field(default_factory=list)
    vacuum: set[str] = field(default_factory=set)
    wal: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Trace:
    started: float
    seconds: list[Second]

    def at(self, moment: float) -> Second:
        index = int(moment - self.started)
        return self.seconds[max(0, min(len(self.seconds) - 1, index))]


def _procs_running() -> int:
    text = Path("/proc/stat").read_text()
    match = re.search(r"^procs_running (\d+)$", text, re.M)
    return int(match.group(1)) if match else -1


async def watch(trace: Trace, dsn: str, own: str, until: float) -> None:
    """Samples the waits, autovacuum's progress and the run queue five times a second, the
    WAL once a second, until `until` (perf_counter)."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": own})
    try:
        statements = await _statements(conn)
        last = await conn.fetchrow(SECOND_SQL)
        tick = 0
        while (now := time.perf_counter()) < until:
            second = trace.at(now)
            second.run_queue.append(_procs_running())
            for row in await conn.fetch(WAITS_SQL, own):
                second.waits[row["what"]] += row["n"]
            second.vacuum.update(r["what"] for r in await conn.fetch(PROGRESS_SQL))
            tick += 1
            if tick % SAMPLES_PER_SECOND == 0:
                row = await conn.fetchrow(SECOND_SQL)
                second.wal = {k: float(row[k] - last[k]) for k in WAL_FIELDS}
                last = row
                if statements is not None:
                    now_statements = await _statements(conn)
                    assert now_statements is not None
                    second.wal |= {k: v - statements[k] for k, v in now_statements.items()}
                    statements = now_statements
            await asyncio.sleep(max(0.0, 1 / SAMPLES_PER_SECOND - (time.perf_counter() - now)))
    finally:
        await conn.close()


async def _statements(conn: Any) -> dict[str, float] | None:
    preloaded = await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
    if "pg_stat_statements" not in preloaded:
        return None
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    row = await conn.fetchrow(STATEMENTS_SQL)
    return {k: float(row[k]) for k in ("plans", "plan_ms", "calls", "exec_ms")}


def _pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(1000 * ordered[int(q * (len(ordered) - 1))], 2) if ordered else None


def rows(trace: Trace) -> list[dict[str, Any]]:
    found = []
    for index, s in enumerate(trace.seconds):
        found.append(
            {
                "second": index,
                "requests": len(s.latencies),
                "p50_ms": _pct(s.latencies, 0.5),
                "p99_ms": _pct(s.latencies, 0.99),
                "reply_p99_ms": _pct(s.replies, 0.99),
                "vacuum": sorted(s.vacuum),
                "waits": dict(s.waits),
                "run_queue": round(sum(s.run_queue) / len(s.run_queue), 2) if s.run_queue else None,
                "wal": s.wal,
                "latencies_ms": [round(1000 * v, 1) for v in s.latencies],
            }
        )
    return found


VACUUM_LOG = re.compile(r"automatic (vacuum|analyze) of table \"([^\"]+)\"")


async def vacuum_reports(dsn: str) -> list[str]:
    """Autovacuum's reports in a private cluster's log (bench/pg_cluster.py writes it next to
    the data directory), if `log_autovacuum_min_duration` let it report."""
    conn = await asyncpg.connect(dsn)
    try:
        data = await conn.fetchval("SELECT current_setting('data_directory')")
        with contextlib.suppress(asyncpg.PostgresError):
            text = await conn.fetchval("SELECT pg_read_file($1)", str(Path(data).parent / "log"))
            return _reports(text or "")
        return []
    finally:
        await conn.close()


def _reports(text: str) -> list[str]:
    """Each report as one line: its log lines joined."""
    reports: list[str] = []
    for line in text.splitlines():
        if VACUUM_LOG.search(line):
            reports.append(line.strip())
        elif reports and line.startswith(("\t", " ")):
            reports[-1] += " | " + line.strip()
    return reports


def write(path: Path, trace: Trace, epoch: float, reports: list[str]) -> None:
    with path.open("w") as out:
        out.write(json.dumps({"started_epoch": epoch}) + "\n")
        for row in rows(trace):
            out.write(json.dumps(row) + "\n")
        for report in reports:
            out.write(json.dumps({"vacuum": report}) + "\n")
