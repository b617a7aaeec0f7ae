"""Audit API latencies on a generated database (see generate.py): look-ups, search pages, stats.

Requests go through the real app in-process (httpx ASGITransport): HTTP parsing, auth, the
audit-log insert and JSON rendering are included; network is not. Prints p50 / p95 / max.

    .venv/bin/python -m bench.audit.benchmark --url postgresql://postgres@127.0.0.1:5432/vg_audit_bench
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
from httpx import ASGITransport, AsyncClient

from app.main import create_app
from app.services.audit.rollup import roll_settled
from app.settings import Settings

TOKEN = "bench-admin-token"  # noqa: S105 - a local benchmark app
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
Params = Callable[[], tuple[str, dict[str, Any]]]


async def samples(url: str, count: int) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT id, reference, number, method FROM verifications TABLESAMPLE SYSTEM (1) "
            "WHERE reference IS NOT NULL LIMIT $1",
            count,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def cases(picks: list[dict[str, Any]], now: datetime) -> dict[str, dict[str, Params]]:
    rng = random.Random(1)  # noqa: S311 - reproducible choice of samples
    one = lambda: rng.choice(picks)  # noqa: E731
    day = lambda n: (now - timedelta(days=n)).isoformat()  # noqa: E731
    v, st = "/audit/verifications", "/audit/stats"
    return {
        "look-up": {
            "by id": lambda: (f"{v}/id/{one()['id']}", {}),
            "by reference": lambda: (f"{v}/reference/{one()['reference']}", {}),
            "by method+number": lambda: (f"{v}/{(p := one())['method']}/number/{p['number']}", {}),
            "timeline": lambda: (f"{v}/{one()['id']}/timeline", {}),
        },
        "search (50 per page)": {
            "no filter": lambda: (v, {}),
            "country=NG": lambda: (v, {"country": "NG"}),
            "number (exact)": lambda: (v, {"number": one()["number"]}),
            "number_prefix=+234803": lambda: (v, {"number_prefix": "+234803"}),
            "number_prefix=+4670": lambda: (v, {"number_prefix": "+4670"}),
            "action=deny reason=number_velocity": lambda: (
                v,
                {"action": "deny", "reason": "number_velocity"},
            ),
            "rule=premium_rate mode=enforce": lambda: (
                v,
                {"rule": "premium_rate", "mode": "enforce"},
            ),
            "rule=night_watch mode=shadow": lambda: (v, {"rule": "night_watch", "mode": "shadow"}),
            "status=FAIL": lambda: (v, {"status": "FAIL"}),
            "status=ABORTED (no match)": lambda: (v, {"status": "ABORTED"}),
            "reason=fallback (no match)": lambda: (v, {"reason": "fallback"}),
            "application=app-3": lambda: (v, {"application": "app-3"}),
            "method=whatsapp country=SE": lambda: (v, {"method": "whatsapp", "country": "SE"}),
            "1 h window 14 days ago": lambda: (v, {"since": day(14), "until": day(14 - 1 / 24)}),
        },
        "stats": {
            "last 24 h (default)": lambda: (st, {}),
            "24 h, hour x country": lambda: (st, {"bucket": "hour", "group_by": "country"}),
            "6 h, minute buckets": lambda: (st, {"bucket": "minute", "since": day(0.25)}),
            "7 days, hour x country": lambda: (
                st,
                {"bucket": "hour", "group_by": "country", "since": day(7)},
            ),
            "30 days, day x rule": lambda: (
                st,
                {"bucket": "day", "group_by": "rule", "since": day(31)},
            ),
            "30 days, country=NG, day": lambda: (
                st,
                {"bucket": "day", "country": "NG", "since": day(31)},
            ),
            # Filters and buckets the hourly rollup cannot answer: a scan of the rows.
            "6.9 days, minute buckets (rows)": lambda: (
                st,
                {"bucket": "minute", "since": day(6.9)},
            ),
            "30 days, status=FAIL, day": lambda: (
                st,
                {"bucket": "day", "status": "FAIL", "since": day(31)},
            ),
            "30 days, number_prefix=+234803 (rows)": lambda: (
                st,
                {"number_prefix": "+234803", "since": day(31)},
            ),
        },
    }


async def measure(http: AsyncClient, make: Params, repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        path, params = make()
        started = time.perf_counter()
        response = await http.get(path, params=params, headers=HEADERS)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, params, response.text[:300])
    return timings


async def deep_pages(http: AsyncClient, pages: int) -> list[float]:
    timings, cursor = [], None
    for _ in range(pages):
        started = time.perf_counter()
        params = {"limit": 50} | ({"cursor": cursor} if cursor else {})
        body = (await http.get("/audit/verifications", params=params, headers=HEADERS)).json()
        timings.append((time.perf_counter() - started) * 1000)
        cursor = body["nextCursor"]
    return timings


async def export(app: Any, since: datetime) -> str:
    """Drive the ASGI app directly and drop each chunk on arrival (httpx's ASGITransport would
    buffer the whole body), so peak RSS shows what the server holds."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    query = urlencode({"format": "ndjson", "since": since.isoformat()}).encode()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/audit/export",
        "raw_path": b"/audit/export",
        "query_string": query,
        "headers": [(b"authorization", HEADERS["Authorization"].encode())],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("bench", 80),
        "client": ("b", 1),
        "root_path": "",
        "app": app,
    }
    rows, asked = 0, False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if asked:  # the client never disconnects: wait until the response is done
            await asyncio.Event().wait()
        asked = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal rows
        if message["type"] == "http.response.body":
            rows += message.get("body", b"").count(b"\n")

    started = time.perf_counter()
    await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return (
        f"{rows:,} rows in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s), peak RSS +{grown:.0f} MB"
    )


def line(name: str, timings: list[float]) -> str:
    ordered = sorted(timings)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    p50 = statistics.median(ordered)
    return f"  {name:42} p50 {p50:7.1f}  p95 {p95:7.1f}  max {ordered[-1]:7.1f} ms"


async def run(url: str, repeat: int) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=url,
        bootstrap_token=TOKEN,
        sinch_apps={"bench": "JViE5vDor0Sw3WllZka15Q=="},
        dev_app_file=Path(tempfile.gettempdir()) / "vg-bench-dev.json",
        log_level="WARNING",
    )
    picks = await samples(url.replace("postgresql+asyncpg://", "postgresql://"), 500)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http:
            count = await _count(url)
            print(f"audit benchmark: {count:,} verifications, {repeat} requests per line (ms)")
            started = time.perf_counter()
            async with app.state.runtime.engine.begin() as conn:
                hours = await roll_settled(conn, now=datetime.now(UTC))
            took = time.perf_counter() - started
            print(f"stats rollup: {hours} hours rolled up in {took:.1f} s (0 if already rolled)")
            for group, named in cases(picks, datetime.now(UTC)).items():
                print(group)
                for name, make in named.items():
                    await measure(http, make, 2)  # warm caches and plans
                    print(line(name, await measure(http, make, repeat)), flush=True)
            print("search, following the cursor")
            print(line("pages 1-40", await deep_pages(http, 40)))
            print("export (ndjson, streamed)")
            print("  last 24 h: " + await export(app, datetime.now(UTC) - timedelta(days=1)))
            print("  everything: " + await export(app, datetime.now(UTC) - timedelta(days=400)))


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(
            await conn.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = 'verifications'"
            )
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/vg_audit_bench")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    url = args.url.replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(run(url, args.repeat))


if __name__ == "__main__":
    main()
