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
from pathlib import Path
from typing import Any

from bench import procs
from bench.run import ROOT

SITE = ROOT / "bench" / "loop_watch_site"

TABLE_SQL = """
SELECT s.relname, s.seq_scan, s.seq_tup_read, coalesce(s.idx_scan, 0) AS idx_scan,
       coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch, s.n_tup_ins, s.n_tup_upd, s.n_tup_del,
       s.n_live_tup, s.n_dead_tup,
       coalesce(io.heap_blks_hit, 0) + coalesce(io.idx_blks_hit, 0) AS blks_hit,
       coalesce(io.heap_blks_read, 0) + coalesce(io.idx_blks_read, 0) AS blks_read,
       s.autovacuum_count + s.autoanalyze_count AS auto
FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid)
"""
DELTAS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd")
DELTAS += ("n_tup_del", "blks_hit", "blks_read", "auto")
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
    out: dict[str, Any] = {
        r["relname"]: {k: int(r[k]) for k in (*DELTAS, "n_live_tup", "n_dead_tup")} for r in rows
    }
    out[CPU] = {row["pid"]: procs.cpu_seconds(row["pid"]) for row in await conn.fetch(BACKENDS_SQL)}
    return out


def _minutes(bins: dict[str, Any], started: float, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"steps": 0, "cpu_ms": 0.0, "long": 0, "long_cpu_ms": 0.0, "tasks": Counter(),
         "long_what": Counter(), "gc": defaultdict(lambda: [0, 0.0, 0.0]), "sql": {}}
        for _ in range(count)
    ]  # fmt: skip
    for key, b in bins.items():
        index = int((int(key) + 2.5 - started) // 60)  # a bin by its middle
        if not 0 <= index < count:
            continue
        m = out[index]
        for name in ("steps", "cpu_ms", "long", "long_cpu_ms"):
            m[name] += b[name]
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
    out: Path, pid: int, started: float, count: int, snapshots: list[dict[str, Any]]
) -> dict[str, Any]:
    """The per-minute profile (JSON-able) from the server's watch file and the snapshots of
    the database's tables taken at the start and the end of every minute."""
    path = out / f"watch.{pid}"
    data = json.loads(path.read_text()) if path.exists() else {"bins": {}}
    minutes = _minutes(data["bins"], started, count)
    result = []
    for index, m in enumerate(minutes):
        sql = sorted(m["sql"].items(), key=lambda kv: -kv[1][1])
        row: dict[str, Any] = {
            "minute": index + 1,
            "loop_cpu_s": round(m["cpu_ms"] / 1000, 2),
            "steps_over_5ms": m["long"],
            "their_cpu_ms": round(m["long_cpu_ms"]),
            "long_what": m["long_what"].most_common(5),
            "task_cpu_ms": {k: round(v) for k, v in m["tasks"].most_common(8)},
            "gc": {g: [n, round(c), round(t, 1)] for g, (n, c, t) in sorted(m["gc"].items())},
            "sql": [
                {"calls": n, "mean_ms": round(ms / n, 2), "max_ms": round(top, 1),
                 "rows_per_call": round(rows / n, 1), "total_ms": round(ms), "text": text}
                for text, (n, ms, rows, top) in sql[:12]
            ],
        }  # fmt: skip
        if index + 1 < len(snapshots):
            before, after = snapshots[index], snapshots[index + 1]
            used = after[CPU]
            row["postgres_cpu_s"] = round(
                sum(cpu - before[CPU].get(pid, 0.0) for pid, cpu in used.items()), 2
            )
            row["tables"] = {
                name: {k: v[k] - before.get(name, {}).get(k, 0) for k in DELTAS}
                | {"live": v["n_live_tup"], "dead": v["n_dead_tup"]}
                for name, v in after.items()
                if name != CPU and any(v[k] - before.get(name, {}).get(k, 0) for k in DELTAS)
            }
        result.append(row)
    return {"minutes": result, "gc_totals": data.get("gc"), "long_steps": data.get("long_steps")}


def render(profile: dict[str, Any]) -> str:
    lines = []
    for m in profile["minutes"]:
        lines.append(
            f"--- minute {m['minute']}: loop CPU {m['loop_cpu_s']} s, its database's backends'"
            f" CPU {m.get('postgres_cpu_s')} s, steps > 5 ms "
            f"{m['steps_over_5ms']} ({m['their_cpu_ms']} ms), gc [n, ms, max] {m['gc']}"
        )
        lines.append(f"  tasks CPU ms: {m['task_cpu_ms']}")
        lines.append(f"  long steps: {m['long_what']}")
        for s in m["sql"]:
            lines.append(
                f"  sql {s['calls']:>6} x {s['mean_ms']:>6} ms (max {s['max_ms']:>6})"
                f" {s['rows_per_call']:>6} rows  {s['text']}"
            )
        for name, t in m.get("tables", {}).items():
            lines.append(f"  table {name}: {t}")
    return "\n".join(lines)
