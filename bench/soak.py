"""`make soak` (`python -m bench.soak`): VerifyGuard on a fresh PostgreSQL database for
--minutes (10) at --rate (300) request events/s, open loop, each allowed attempt followed by
its SMS delivery receipt (1 s later) and its result event (2 s later), every event signed as
it is sent. Per minute: p50/p99 of the request events (from their scheduled time), errors,
the server's RSS and the fallback answers, the load generator's lateness and CPU, the
database's size, reads and checkpoints; at the end, rows stored against events sent.
--warmup-minutes N runs N minutes first, printed but left out of the targets.
--private-postgres runs it on a private PostgreSQL cluster with the recommended production
settings (bench/postgres_settings.py) instead of the server at --postgres.

Per minute also the server's cost per answer, independent of how much CPU the machine
spares: CPU ms per request event of the server process and of the PostgreSQL processes
serving it (the soak database's client backends; with --private-postgres every process of
the cluster), from /proc, and the counter rows read per request event (`counters` and
`counter_hours`: tables' sequential tuples plus index entries, pg_stat_user_*).

--history-hours H (default HISTORY_HOURS, 1) first fills the counters with H hours of
history for the keys the soak's request events count (their countries, a row per minute;
their number ranges, a row per quarter hour; --history-numbers other numbers' rows:
bench.counter_history.fill), so minute 1 reads windows as full as a server that has run
for an hour, and what the soak measures is drift, not the windows filling up: the starter
policy reads 1 h windows (and 24 h of country successes), so on a fresh database
(--history-hours 0) each hot-key attempt reads more rows every minute for the first hour
(63 rows per country attempt at 1 h, 75 at 24 h, bench.counter_history), and the cost per
answer rises with it. --history-hours 0 measures a fresh install's first minutes.

Targets (issue 16): p99 of the last minute within 20 % of the first, RSS growth after the
first minute < 20 MB, no fallback, nothing missing. Exit status 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from app.rules.engine import compile_policy
from app.rules.starter import starter_policy
from app.simulator.catalog import LEGIT, pick
from app.sinch import samples
from app.sinch.signature import callback_headers
from app.store.migrate import upgrade
from app.store.pg_batch_count import CountItem
from bench import counter_history, pg_cluster, postgres_settings, procs, soak_profile, soak_trace
from bench.batch_cost import count_items
from bench.loadgen import exchange
from bench.run import CALLBACK_PATH, KEY, ROOT, SECRET, postgres_database, verifyguard

HOST = "127.0.0.1"
HISTORY_HOURS = 1  # --history-hours' default (docstring)
SEED = 16  # the request events' numbers: _offer's and the history fill's (the same attempts)
OWN = "vg-soak"  # application_name of the soak's own PostgreSQL connections (not the server's)
RECEIPT_AFTER, RESULT_AFTER = 1.0, 2.0


@dataclass(slots=True)
class Minute:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    rss_mb: float | None = None
    fallbacks: float | None = None
    # Load-independent (pg_stat_activity sampled every second, bench/soak.py `_watch`):
    # backends seen waiting on a lock, those of them in a statement writing counters, and the
    # oldest open transaction seen (a hot counter row is held until its transaction ends).
    lock_waits: int = 0
    counter_waits: int = 0
    longest_xact_ms: float = 0.0
    # Which transaction that was: its backend type, state and its latest statement (for an
    # idle-in-transaction backend, the last one it ran), truncated (`longest_what`).
    longest_xact: str = ""
    # Samples (about one a second) in which an autovacuum worker ran in the soak database,
    # and the tables it worked on.
    autovacuum_samples: int = 0
    autovacuumed: set[str] = field(default_factory=set)
    # The load generator, on the same machine: how late its request events were written to
    # a connection after their scheduled time (the loop's lateness and the wait for a free
    # connection; counted in the latencies, as it must be in an open loop), the part of each
    # latency from write to reply, and its own CPU seconds this minute.
    send_lags: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)
    loadgen_cpu_s: float | None = None
    # The database at the minute's end: its size against shared_buffers (once larger, new
    # pages evict others, dirty ones written out by the backends themselves), the blocks
    # its backends had to read from outside shared_buffers this minute, and the server's
    # checkpoints this minute (each is followed by full-page images in the WAL). PostgreSQL 15
    # counts a block added to a relation as a block read: `new_blocks` (the database's growth)
    # is that part, the rest were read from outside shared_buffers.
    db_mb: float | None = None
    blks_read: int | None = None
    new_blocks: int | None = None
    checkpoints: int | None = None
    # Load-independent cost per answer (CPU time from /proc, not wall clock): the server
    # process's CPU seconds this minute and its PostgreSQL backends' (the soak database's
    # client backends; with --private-postgres every process of the cluster, so its
    # checkpointer, WAL writer and autovacuum too), less the soak's own connections. And the
    # counter rows the database read this minute (tables' sequential tuples plus index
    # entries of `counters` and `counter_hours`): what grows as a fresh database's windows
    # fill up (--history-hours).
    # Per request event answered this minute (by the time of its answer, not its schedule:
    # a server that falls behind spends a minute's CPU on earlier minutes' events).
    server_cpu_s: float | None = None
    pg_cpu_s: float | None = None
    # The server's garbage collections this minute, per generation: how many and their
    # pauses' sum in ms (its `verifyguard_gc_pause_seconds`; an older server has none).
    gc: dict[str, list[float]] | None = None
    counter_rows: int | None = None
    counter_seq_rows: int | None = None  # of counter_rows, read by sequential scans
    answered: int = 0

    def row(self, index: int) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        lags, replies = sorted(self.send_lags), sorted(self.replies)

        def pct(q: float, values: list[float] = ordered) -> float | None:
            return round(1000 * values[int(q * (len(values) - 1))], 2) if values else None

        return {
            "minute": index + 1,
            "requests": len(ordered),
            "errors": self.errors,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            # The tail as a count, steadier than one quantile: answers slower than 20 ms.
            "over_20ms": len(ordered) - bisect.bisect_right(ordered, 0.020),
            "rss_mb": self.rss_mb,
            "fallbacks": self.fallbacks,
            "lock_waits": self.lock_waits,
            "counter_waits": self.counter_waits,
            "longest_xact_ms": round(self.longest_xact_ms, 1),
            "longest_xact": self.longest_xact,
            "autovacuum_samples": self.autovacuum_samples,
            "autovacuumed": sorted(self.autovacuumed),
            "send_lag_p99_ms": pct(0.99, lags),
            "reply_p50_ms": pct(0.50, replies),
            "reply_p99_ms": pct(0.99, replies),
            "loadgen_cpu_s": self.loadgen_cpu_s,
            "db_mb": self.db_mb,
            "blks_read_per_request": round(self.blks_read / len(ordered), 2)
            if self.blks_read is not None and ordered
            else None,
            "blks_read_beyond_growth_per_request": round(
                (self.blks_read - self.new_blocks) / len(ordered), 2
            )
            if self.blks_read is not None and self.new_blocks is not None and ordered
            else None,
            "checkpoints": self.checkpoints,
            "answered": self.answered,
            "server_cpu_ms_per_request": _per(self.server_cpu_s, 1000, self.answered),
            "pg_cpu_ms_per_request": _per(self.pg_cpu_s, 1000, self.answered),
            "counter_rows_read_per_request": _per(self.counter_rows, 1, self.answered),
            "counter_seq_rows_read_per_request": _per(self.counter_seq_rows, 1, self.answered),
            "gc": self.gc,
        }


def _per(value: float | None, scale: float, requests: int) -> float | None:
    return round(scale * value / requests, 3) if value is not None and requests else None


@dataclass(slots=True)
class Soak:
    port: int
    pid: int
    started: float
    minutes: list[Minute]
    queue: asyncio.Queue[tuple[float, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)
    sent: dict[str, int] = field(default_factory=lambda: {"request": 0, "receipt": 0, "result": 0})
    follow_ups: set[asyncio.TimerHandle] = field(default_factory=set)
    unsent: int = 0  # left in the queue when the drain time ran out
    spool_left: int = 0  # in the server's spool when the drain ended
    epoch: float = field(default_factory=lambda: time.time())  # `started`, on the wall clock
    tables: list[dict[str, Any]] = field(default_factory=list)  # --profile: each minute's end
    # --profile: per minute, the soak database's WAL by relation, and the bytes skipped
    wal: list[tuple[dict[str, list[int]], int]] = field(default_factory=list)
    trace: soak_trace.Trace | None = None  # --trace: second by second

    def minute(self, at: float) -> Minute:
        return self.minutes[min(len(self.minutes) - 1, int((at - self.started) // 60))]

    def later(self, delay: float, event: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def put() -> None:
            self.follow_ups.discard(handle)
            self.queue.put_nowait((time.perf_counter(), event))

        handle = loop.call_later(delay, put)
        self.follow_ups.add(handle)


def _signed(event: dict[str, Any], port: int) -> bytes:
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = callback_headers(
        key=KEY, secret_b64=SECRET, body=body, path=CALLBACK_PATH, now=datetime.now(UTC)
    )
    head = [f"POST {CALLBACK_PATH} HTTP/1.1", f"host: {HOST}:{port}"]
    head += [f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _worker(soak: Soak) -> None:
    reader, writer = await asyncio.open_connection(HOST, soak.port)
    while (item := await soak.queue.get()) is not None:
        scheduled, event = item
        request = _signed(event, soak.port)
        written = time.perf_counter()
        try:
            reply = await exchange(reader, writer, request)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed a connection left idle past its keep-alive timeout (at low
            # rates, or while the drain waits for the last follow-ups): send it again on a
            # new one (the dedupe key makes a repeat harmless).
            writer.close()
            reader, writer = await asyncio.open_connection(HOST, soak.port)
            written = time.perf_counter()
            reply = await exchange(reader, writer, _signed(event, soak.port))
        kind = event["event"]
        soak.sent[_KINDS[kind]] += 1
        minute = soak.minute(scheduled)
        if not reply.startswith(b"200"):
            minute.errors += 1
            continue
        if kind == "VerificationRequestEvent":
            done = time.perf_counter()
            soak.minute(done).answered += 1
            minute.latencies.append(done - scheduled)
            minute.send_lags.append(written - scheduled)
            minute.replies.append(done - written)
            if soak.trace is not None:
                second = soak.trace.at(scheduled)
                second.latencies.append(done - scheduled)
                second.replies.append(done - written)
            if b'"allow"' in reply:
                _follow_up(soak, event)
    writer.close()


_KINDS = {
    "VerificationRequestEvent": "request",
    "VerificationSmsDeliveredEvent": "receipt",
    "VerificationResultEvent": "result",
}


def _follow_up(soak: Soak, request: dict[str, Any]) -> None:
    ident, number = request["id"], request["identity"]["endpoint"]
    soak.later(RECEIPT_AFTER, samples.delivered_event(verification_id=ident, number=number))
    soak.later(RESULT_AFTER, samples.result_event(verification_id=ident, number=number))


def request_events() -> Iterator[dict[str, Any]]:
    """The soak's request events, in order: realistic numbers, as bench.payloads (no velocity
    rule fires). `history_items` draws the same numbers."""
    rng = random.Random(SEED)  # noqa: S311 - load shape, not secrets
    while True:
        span = pick(rng, LEGIT)
        yield samples.request_event(
            number=span.number(rng), verification_id=str(uuid.uuid4()), price=span.price
        )


def history_items(count: int) -> list[CountItem]:
    """What the soak's first `count` request events count under the starter policy (the
    keys: their countries, number ranges and numbers): bench.batch_cost.count_items draws
    its numbers as `request_events` does, from the same seed."""
    compiled = compile_policy(starter_policy(), version=1)
    return count_items(random.Random(SEED), compiled, count, 1)  # noqa: S311


async def fill_history(dsn: str, hours: int, count: int, numbers: int) -> int:
    """--history-hours: the soak database's counters filled with `hours` hours of history
    (bench.counter_history.fill: every country key a row per minute, every range key a row
    per quarter hour, `numbers` other per-number rows) for the keys of the soak's first
    `count` request events; the counter rows stored."""
    items = history_items(count)
    conn = await asyncpg.connect(dsn, server_settings={"application_name": OWN})
    try:
        return await counter_history.fill(conn, items, hours, numbers)
    finally:
        await conn.close()


async def _offer(soak: Soak, rate: float, until: float) -> None:
    events = request_events()
    sent = 0
    while (now := time.perf_counter()) < until:
        due = int((now - soak.started) * rate) + 1
        for i in range(sent, due):
            soak.queue.put_nowait((soak.started + i / rate, next(events)))
        sent = due
        await asyncio.sleep(max(0.0, soak.started + sent / rate - time.perf_counter()))


DB_SQL = """
SELECT pg_database_size(current_database()) AS size, d.blks_read,
       b.checkpoints_timed + b.checkpoints_req AS checkpoints
       , ((SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables
          WHERE relname IN ('counters', 'counter_hours'))
       + (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes
          WHERE relname IN ('counters', 'counter_hours')))::bigint AS counter_rows
       , (SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables
          WHERE relname IN ('counters', 'counter_hours'))::bigint AS counter_seq_rows
FROM pg_stat_database d, pg_stat_bgwriter b WHERE d.datname = current_database()
"""

BACKENDS_SQL = """
SELECT pid, application_name = $1 AS own FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
"""


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(parent: int) -> list[int]:
    """The processes whose parent is `parent` (a PostgreSQL cluster's postmaster: all of it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):  # ended while we looked
                if _parent(int(entry.name)) == parent:
                    found.append(int(entry.name))
    return found


async def _pg_cpu(conn: Any, cluster: bool) -> dict[int, float]:
    """CPU seconds of the PostgreSQL processes serving the soak: the soak database's client
    backends, or (`cluster`, a private one) every process of the cluster; never the soak's
    own connections."""
    rows = await conn.fetch(BACKENDS_SQL, OWN)
    own = {r["pid"] for r in rows if r["own"]}
    if cluster:
        postmaster = _parent(conn.get_server_pid())
        pids = [postmaster, *_children(postmaster)]
    else:
        pids = [r["pid"] for r in rows]
    usage = {}
    for pid in pids:
        if pid not in own:
            with contextlib.suppress(OSError, IndexError, ValueError):
                usage[pid] = procs.cpu_seconds(pid)
    return usage


async def _sample(
    soak: Soak, count: int, dsn: str | None, profile: bool, cluster: bool = False
) -> None:
    """At the end of each minute: the server's RSS, its fallback answers so far, the
    server's and its PostgreSQL backends' CPU, the database's size, reads, counter rows read
    and the checkpoints (with --profile, the database's table statistics too, and at the
    start)."""
    own = {"application_name": OWN}
    conn = await asyncpg.connect(dsn, server_settings=own) if dsn else None
    try:
        if conn is not None and profile:
            soak.tables.append(await soak_profile.tables(conn))
        db = await conn.fetchrow(DB_SQL) if conn is not None else None
        pg = await _pg_cpu(conn, cluster) if conn is not None else None
        server = procs.cpu_seconds(soak.pid)
        cpu = time.process_time()
        pauses = await _gc_pauses(soak.port)
        for index in range(count):
            await asyncio.sleep(max(0.0, soak.started + 60 * (index + 1) - time.perf_counter()))
            used, cpu = time.process_time() - cpu, time.process_time()
            soak.minutes[index].loadgen_cpu_s = round(used, 2)
            soak.minutes[index].rss_mb = _rss_mb(soak.pid)
            used, server = procs.cpu_seconds(soak.pid) - server, procs.cpu_seconds(soak.pid)
            soak.minutes[index].server_cpu_s = round(used, 3)
            soak.minutes[index].fallbacks = await _fallbacks(soak.port)
            now_pauses = await _gc_pauses(soak.port)
            soak.minutes[index].gc = {
                generation: [
                    now_pauses[generation][0] - count,
                    round(now_pauses[generation][1] - ms, 1),
                ]
                for generation, (count, ms) in pauses.items()
            }
            pauses = now_pauses
            if conn is not None and db is not None:
                now = await conn.fetchrow(DB_SQL)
                minute = soak.minutes[index]
                minute.db_mb = round(now["size"] / 2**20, 1)
                minute.blks_read = now["blks_read"] - db["blks_read"]
                minute.new_blocks = (now["size"] - db["size"]) // 8192
                minute.checkpoints = now["checkpoints"] - db["checkpoints"]
                minute.counter_rows = now["counter_rows"] - db["counter_rows"]
                minute.counter_seq_rows = now["counter_seq_rows"] - db["counter_seq_rows"]
                db = now
            if conn is not None and pg is not None:
                after = await _pg_cpu(conn, cluster)
                soak.minutes[index].pg_cpu_s = round(procs.cpu_used(pg, after), 3)
                pg = after
            if conn is not None and profile:
                soak.tables.append(await soak_profile.tables(conn))
    finally:
        if conn is not None:
            await conn.close()


WATCH_SQL = """
WITH open AS (
  SELECT wait_event_type, query, backend_type, state, application_name,
         extract(epoch FROM clock_timestamp() - xact_start) AS age
  FROM pg_stat_activity
  WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
)
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS waits,
       count(*) FILTER (WHERE wait_event_type = 'Lock' AND query LIKE '%INTO counters%')
         AS counter_waits,
       coalesce(max(age), 0) AS longest,
       array_remove(array_agg(query) FILTER (WHERE backend_type = 'autovacuum worker'), NULL)
         AS autovacuum,
       (SELECT concat_ws(' | ', nullif(application_name, ''), backend_type, state,
                         left(regexp_replace(query, '\\s+', ' ', 'g'), $1))
        FROM open ORDER BY age DESC LIMIT 1) AS what
FROM open
"""
WHAT_CHARS = 160  # of the longest transaction's statement, as sampled


async def _watch(soak: Soak, dsn: str, until: float) -> None:
    """Every second, the soak database's backends: how many wait on a lock (how many of them
    in a statement writing counters: the hot rows), and the oldest open transaction, with
    what it is (backend type, state, its latest statement: the periodic job or request
    statement that holds it). These do not depend on how much CPU the machine spares, as
    latencies and fallbacks do."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": OWN})
    try:
        while (now := time.perf_counter()) < until:
            row = await conn.fetchrow(WATCH_SQL, WHAT_CHARS)
            minute = soak.minute(now)
            minute.lock_waits += row["waits"]
            minute.counter_waits += row["counter_waits"]
            if row["autovacuum"]:
                minute.autovacuum_samples += 1
                minute.autovacuumed.update(
                    q.removeprefix("autovacuum: ") for q in row["autovacuum"]
                )
            longest = 1000 * float(row["longest"])
            if longest > minute.longest_xact_ms:
                minute.longest_xact_ms, minute.longest_xact = longest, row["what"] or ""
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def _wal_watch(soak: Soak, dsn: str, until: float) -> None:
    """--profile: every 10 s, the WAL written since the last read, by relation (each read
    counted in the minute it ends in)."""
    reader = await soak_profile.wal_open(dsn)
    soak.wal = [({}, 0) for _ in soak.minutes]
    try:
        while time.perf_counter() < until:
            await asyncio.sleep(max(0.0, min(10.0, until - time.perf_counter())))
            index = min(
                len(soak.minutes) - 1, int((time.perf_counter() - 0.5 - soak.started) // 60)
            )
            try:
                found, skipped = await soak_profile.wal_read(reader)
            except asyncpg.PostgresError as error:  # a gap in the profile, not a failed soak
                print(f"… WAL read: {error}", file=sys.stderr)
                continue
            soak_profile.wal_add(soak.wal[index][0], found)
            soak.wal[index] = (soak.wal[index][0], soak.wal[index][1] + skipped)
    finally:
        await soak_profile.wal_close(reader)


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return round(int(match.group(1)) / 1024, 1) if match else float("nan")


async def _fallbacks(port: int) -> float:
    return await _metric(port, "verifyguard_fallback_answers_total")


async def _metric(port: int, name: str) -> float:
    """The sum of a metric's samples on the server's /metrics."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET /metrics HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n".encode())
    text = (await reader.read()).decode()
    writer.close()
    found = re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)
    return sum(float(value) for value in found)


async def _gc_pauses(port: int) -> dict[str, tuple[float, float]]:
    """The server's collections so far per generation: how many, and their pauses in ms."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET /metrics HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n".encode())
    text = (await reader.read()).decode()
    writer.close()
    found = dict.fromkeys("012", (0.0, 0.0))
    pattern = r'^verifyguard_gc_pause_seconds_(count|sum)\{generation="(\d)"\} ([0-9.e+-]+)$'
    for kind, generation, value in re.findall(pattern, text, re.M):
        count, ms = found[generation]
        found[generation] = (float(value), ms) if kind == "count" else (count, 1000 * float(value))
    return found


def _drop_backlog(soak: Soak) -> None:
    """A server that fell behind leaves a queue: what was never sent is counted, not sent."""
    while not soak.queue.empty():
        if soak.queue.get_nowait() is not None:
            soak.unsent += 1
    for handle in soak.follow_ups:
        handle.cancel()
        soak.unsent += 1
    soak.follow_ups.clear()


async def drive(
    port: int,
    pid: int,
    *,
    minutes: int,
    rate: float,
    connections: int,
    drain_seconds: float,
    dsn: str | None = None,
    profile: bool = False,
    cluster: bool = False,
    trace: bool = False,
) -> Soak:
    soak = Soak(port, pid, time.perf_counter(), [Minute() for _ in range(minutes)])
    if trace:
        seconds = [soak_trace.Second() for _ in range(60 * minutes)]
        soak.trace = soak_trace.Trace(soak.started, seconds)
    workers = [asyncio.create_task(_worker(soak)) for _ in range(connections)]
    sampler = asyncio.create_task(_sample(soak, minutes, dsn, profile, cluster))
    end = soak.started + 60 * minutes
    watcher = asyncio.create_task(_watch(soak, dsn, end)) if dsn else None
    wal = asyncio.create_task(_wal_watch(soak, dsn, end)) if dsn and profile else None
    tracer = (
        asyncio.create_task(soak_trace.watch(soak.trace, dsn, OWN, end))
        if dsn and soak.trace is not None
        else None
    )
    await _offer(soak, rate, end)
    await sampler
    if wal is not None:
        await wal
    if watcher is not None:
        await watcher
    if tracer is not None:
        await tracer
    deadline = time.perf_counter() + drain_seconds
    while (soak.follow_ups or not soak.queue.empty()) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # the last receipts and results
    _drop_backlog(soak)
    # What the server spooled (fallback answers, callbacks of their verifications) is in the
    # database once replayed: wait for that too, within the same drain time. Its last replay
    # at shutdown is bounded (10 s), so what is left then is not in the rows counted.
    while (left := await _metric(port, "verifyguard_spool_depth")) and (  # noqa: ASYNC110
        time.perf_counter() < deadline
    ):
        await asyncio.sleep(0.5)
    soak.spool_left = int(left)
    for _ in workers:
        soak.queue.put_nowait(None)
    await asyncio.gather(*workers)
    return soak


async def _stored(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "callbacks": await conn.fetchval("SELECT count(*) FROM callbacks"),
            "verifications": await conn.fetchval("SELECT count(*) FROM verifications"),
            "results": await conn.fetchval(
                "SELECT count(*) FROM verifications WHERE status IS NOT NULL"
            ),
            "fallback_decisions": await conn.fetchval(
                "SELECT count(*) FROM verifications WHERE reason = 'fallback'"
            ),
        }
    finally:
        await conn.close()


VACUUMS_SQL = """
SELECT relname, autovacuum_count, autoanalyze_count, n_live_tup, n_dead_tup, n_tup_upd,
       n_tup_hot_upd
FROM pg_stat_user_tables
WHERE autovacuum_count + autoanalyze_count > 0 ORDER BY autovacuum_count DESC, relname
"""


async def _vacuums(dsn: str) -> str:
    """The tables autovacuum visited during the soak: its vacuums and analyzes of each, the
    live and dead rows left at the end, and the updates (those that stayed on their page:
    HOT, no index entry; a long snapshot keeps dead versions that would make room)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(VACUUMS_SQL)
    finally:
        await conn.close()
    return "\n".join(
        f"  {r['relname']}: {r['autovacuum_count']} vacuums, {r['autoanalyze_count']} analyzes,"
        f" {r['n_live_tup']} live / {r['n_dead_tup']} dead rows,"
        f" {r['n_tup_upd']} updates ({r['n_tup_hot_upd']} HOT)"
        for r in rows
    )


def verdicts(
    rows: list[dict[str, Any]], sent: dict[str, int], stored: dict[str, int]
) -> dict[str, bool]:
    first, last = rows[0], rows[-1]
    p99_flat = bool(first["p99_ms"] and last["p99_ms"] and last["p99_ms"] <= 1.2 * first["p99_ms"])
    rss = [r["rss_mb"] for r in rows if r["rss_mb"] is not None]
    return {
        "p99 flat (last minute within 20 % of the first)": p99_flat,
        "RSS growth after the first minute < 20 MB": bool(rss) and rss[-1] - rss[0] < 20,
        "no fallback": not last["fallbacks"] and not stored["fallback_decisions"],
        "nothing missing (callbacks stored = events sent)": stored["callbacks"]
        == sum(sent.values()),
        "every request event stored": stored["verifications"] == sent["request"],
        "no error answer": not any(r["errors"] for r in rows),
    }


def render(
    rows: list[dict[str, Any]],
    sent: dict[str, int],
    stored: dict[str, int],
    checks: dict[str, bool],
) -> str:
    lines = [
        "minute  requests  errors  p50 ms  p99 ms  RSS MB  fallbacks"
        "  lock waits  on counters  longest xact ms  send lag p99  reply p50/p99  loadgen CPU s"
        "  DB MB  reads/request  less new pages  checkpoints"
        "  server CPU ms/req  PG CPU ms/req  counter rows/req"
    ]
    for r in rows:
        lines.append(
            f"{'w' if r.get('warmup') else ' '}{r['minute']:>5}  {r['requests']:>8}"
            f"  {r['errors']:>6}  {r['p50_ms']!s:>6}"
            f"  {r['p99_ms']!s:>6}  {r['rss_mb']!s:>6}  {r['fallbacks']!s:>9}"
            f"  {r['lock_waits']:>10}  {r['counter_waits']:>11}  {r['longest_xact_ms']:>15}"
            f"  {r['send_lag_p99_ms']!s:>12}  {r['reply_p50_ms']!s:>5}/{r['reply_p99_ms']!s:<6}"
            f"  {r['loadgen_cpu_s']!s:>13}  {r['db_mb']!s:>5}  {r['blks_read_per_request']!s:>13}"
            f"  {r['blks_read_beyond_growth_per_request']!s:>14}  {r['checkpoints']!s:>11}"
            f"  {r['server_cpu_ms_per_request']!s:>17}  {r['pg_cpu_ms_per_request']!s:>13}"
            f"  {r['counter_rows_read_per_request']!s:>16}"
        )
    lines.append(f"sent: {sent} (total {sum(sent.values())})")
    lines.append(f"stored: {stored}")
    lines.append("the longest open transaction of each minute (backend | state | statement):")
    lines += [f"{r['minute']:>6}  {r['longest_xact_ms']:>8} ms  {r['longest_xact']}" for r in rows]
    lines.append("the server's garbage collections per minute, by generation: count (pause ms)")
    lines += [
        f"{r['minute']:>6}  "
        + "  ".join(f"gen{g} {n:g} ({ms} ms)" for g, (n, ms) in (r["gc"] or {}).items())
        for r in rows
    ]
    lines.append("autovacuum, per minute: seconds seen running (sampled each second): tables")
    lines += [
        f"{r['minute']:>6}  {r['autovacuum_samples']:>4} s  {', '.join(r['autovacuumed'])}"
        for r in rows
        if r["autovacuum_samples"]
    ]
    lines += [f"{'PASS' if ok else 'MISS'}  {name}" for name, ok in checks.items()]
    return "\n".join(lines)


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[str]:
    """The PostgreSQL server to soak on: --postgres, or a private cluster on the settings
    recommended for production (stopped and removed when the soak ends)."""
    if not args.private_postgres:
        yield args.postgres
        return
    with pg_cluster.private_cluster(_cluster_settings(args)) as admin:
        yield admin


def _cluster_settings(args: argparse.Namespace) -> dict[str, str]:
    """The production settings, with --pg-setting's overrides and additions (to try one)."""
    extra = dict(item.split("=", 1) for item in args.pg_setting)
    return {**postgres_settings.SETTINGS, **extra}


async def _settings(dsn: str, names: list[str]) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1)",
            names,
        )
    finally:
        await conn.close()
    return " ".join(f"{r['name']}={r['value']}" for r in rows)


def soak(args: argparse.Namespace) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="vg-soak-") as tmp,
        _server(args) as admin,
        postgres_database(admin, prefix=args.db_prefix) as dsn,
    ):
        where = ("a private cluster at " if args.private_postgres else "") + admin.rsplit("/", 1)[0]
        print(
            f"… PostgreSQL ({where}): {asyncio.run(_settings(dsn, list(_cluster_settings(args))))}",
            file=sys.stderr,
        )
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        if args.history_hours:
            attempts = int(args.rate * 60 * (args.warmup_minutes + args.minutes))
            started = time.perf_counter()
            filled = asyncio.run(
                fill_history(dsn, args.history_hours, attempts, args.history_numbers)
            )
            print(
                f"… history: {args.history_hours} h for the keys of {attempts} request events,"
                f" {filled} counter rows ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
        target = verifyguard(url, "postgres")
        port, workdir = args.port or procs.free_port(), Path(tmp)
        log = workdir / "soak-server.log"
        total = args.warmup_minutes + args.minutes
        print(
            f"… soak: {args.warmup_minutes} + {args.minutes} min at {args.rate:g} request events/s",
            file=sys.stderr,
        )
        env = target.env
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            env = env | soak_profile.server_env(args.profile)
        with procs.uvicorn_server(
            target.factory, port=port, env=env, log=log, cwd=workdir, app_dir=args.app_dir
        ) as server:
            cpu = procs.cpu_seconds(server.pid)
            run = asyncio.run(
                drive(
                    port,
                    server.pid,
                    minutes=total,
                    rate=args.rate,
                    connections=args.connections,
                    drain_seconds=args.drain_seconds,
                    dsn=dsn,
                    profile=bool(args.profile),
                    cluster=args.private_postgres,
                    trace=args.trace is not None,
                )
            )
            cpu = procs.cpu_seconds(server.pid) - cpu
        if args.trace is not None and run.trace is not None:
            reports = asyncio.run(soak_trace.vacuum_reports(dsn))
            soak_trace.write(args.trace, run.trace, run.epoch, reports)
        if args.profile:  # the server has stopped: its watch file is complete
            found = soak_profile.report(
                args.profile, server.pid, run.epoch, total, run.tables, run.wal
            )
            (args.profile / "profile.json").write_text(json.dumps(found))
            print(soak_profile.render(found), file=sys.stderr)
        stored = asyncio.run(_stored(dsn))  # once the server has stopped, its writes done
        print(f"autovacuum, per table:\n{asyncio.run(_vacuums(dsn))}", file=sys.stderr)
        rows = [minute.row(i) for i, minute in enumerate(run.minutes)]
        for row in rows[: args.warmup_minutes]:
            row["warmup"] = True
        checks = verdicts(rows[args.warmup_minutes :], run.sent, stored)
        checks["the server kept up (nothing left unsent)"] = run.unsent == 0
        stored["unsent"] = run.unsent
        stored["spool_left"] = run.spool_left
        # Load-independent: the server's CPU seconds per 1,000 callbacks sent.
        per_1000 = 1000 * cpu / max(1, sum(run.sent.values()))
        print(f"server CPU: {per_1000:.3f} s per 1,000 callbacks", file=sys.stderr)
        if args.json:
            print(
                json.dumps({"minutes": rows, "sent": run.sent, "stored": stored, "checks": checks})
            )
        else:
            print(render(rows, run.sent, stored, checks))
        return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--private-postgres",
        action="store_true",
        help="initdb a private cluster with the production settings (bench/postgres_settings.py)"
        " on a port of BENCH_PORTS instead of using --postgres; removed at the end",
    )
    parser.add_argument("--db-prefix", default="vg_bench_", help="of the database created")
    parser.add_argument("--port", type=int, default=0, help="the server's (0: a free one)")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument(
        "--warmup-minutes",
        type=int,
        default=0,
        help="run this long first at the same rate, shown but not in the targets (operations.md)",
    )
    parser.add_argument("--rate", type=float, default=300.0, help="request events per second")
    parser.add_argument(
        "--history-hours",
        type=int,
        default=HISTORY_HOURS,
        help="fill the counters with this many hours of history for the soak's keys before"
        " the load (0: a fresh database, whose windows fill up during the soak)",
    )
    parser.add_argument(
        "--history-numbers",
        type=int,
        default=50_000,
        help="with --history-hours: other per-number counter rows (bench.counter_history)",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--drain-seconds", type=float, default=60.0, help="after the run, for the backlog"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--app-dir", type=Path, default=ROOT, help="the checkout the server imports app from"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="a directory: run the server with bench/loop_watch.py and print, per minute, its"
        " loop steps, periodic tasks, collections and statements, and the tables' scans",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --private-postgres: a setting added to or overriding the production ones"
        " (to try one; repeatable)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="a file: the soak second by second (latencies, autovacuum, WAL, waits, run queue;"
        " bench/soak_trace.py), as JSON lines",
    )
    args = parser.parse_args(argv)
    # `kill` as Ctrl-C: the blocks' ends stop the server and remove a private cluster.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    raise SystemExit(soak(args))


if __name__ == "__main__":
    main()
