"""`python -m bench.overview --url …`: how long the console's overview takes on a stored
database (e.g. the 1M verifications of bench/audit/generate.py), per period (24 h, 7 d,
30 d), for the page and the partial it polls; prints p50 and max (ms) and the load average.

Requests go through the real app in-process (httpx ASGITransport), signed in as a console
session: session check, the audit-log write, the queries and the HTML are included; the
network is not. "cold" is the first request of a period in a freshly started app without its warm-up
(new connections, nothing cached in the process), "warmed-up" the first one once the app's
background warm-up (app/web/warm.py) is done; "warm" are the `--repeat` requests after
each (p50, p99, max over both).

    .venv/bin/python -m bench.overview --url postgresql://postgres@127.0.0.1:5432/vg_h18_1m
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from httpx import ASGITransport, AsyncClient

from app.main import create_app
from app.settings import Settings

TOKEN = "bench-overview-admin-token"  # noqa: S105 - a local benchmark app
PERIODS = ("24h", "7d", "30d")
PAGES = {"page": "/", "partial": "/overview/live"}
_FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


SLOW_MS = 250.0  # as the app's default; --slow-ms 1e9 computes every overview


def settings(url: str, *, warm_up: bool = False, slow_ms: float = SLOW_MS) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=url,
        bootstrap_token=TOKEN,
        sinch_apps={"bench": "JViE5vDor0Sw3WllZka15Q=="},
        dev_app_file=Path(tempfile.gettempdir()) / "vg-bench-dev.json",
        log_level="WARNING",
        stats_rollup_interval_seconds=0,  # the pages refresh what they read, as measured
        console_warm_up=warm_up,
        console_overview_slow_ms=slow_ms,
    )


async def sign_in(http: AsyncClient) -> None:
    form = await http.get("/sign-in")
    key = _FORM_KEY.search(form.text)
    assert key is not None, "the sign-in form has no form key"
    reply = await http.post("/sign-in", data={"token": TOKEN, "form_key": key.group(1)})
    assert reply.status_code == 303, reply.text[:300]
    assert "vg_session" in http.cookies


async def timed(http: AsyncClient, path: str, period: str) -> float:
    started = time.perf_counter()
    reply = await http.get(path, params={"period": period})
    elapsed = (time.perf_counter() - started) * 1000
    assert reply.status_code == 200, (path, period, reply.status_code, reply.text[:300])
    return elapsed


async def one_period(
    url: str, page: str, period: str, repeat: int, *, warm_up: bool = False, slow_ms: float
) -> tuple[float, list[float]]:
    """A fresh app: the first request (cold; with `warm_up`, once the app's background
    warm-up is done), then `repeat` more (warm)."""
    app = create_app(settings(url, warm_up=warm_up, slow_ms=slow_ms))
    async with app.router.lifespan_context(app):
        await app.state.console.warmed.wait()
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http:
            await sign_in(http)
            cold = await timed(http, PAGES[page], period)
            warm = [await timed(http, PAGES[page], period) for _ in range(repeat)]
    return cold, warm


def _p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


async def run(url: str, repeat: int, pages: list[str], slow_ms: float) -> None:
    print(f"overview on {url.rsplit('@', 1)[-1]}, {repeat} warm requests per line (ms)")
    print(f"before: {load()}; overviews slower than {slow_ms:g} ms kept (overview_cache.py)")
    print(
        f"  {'':8} {'period':6} {'cold':>8} {'warmed-up':>10} "
        f"{'warm p50':>9} {'warm p99':>9} {'warm max':>9}"
    )
    for page in pages:
        for period in PERIODS:
            cold, warm = await one_period(url, page, period, repeat, slow_ms=slow_ms)
            first, more = await one_period(url, page, period, repeat, warm_up=True, slow_ms=slow_ms)
            warm += more
            p50, p99, top = statistics.median(warm), _p99(warm), max(warm)
            print(
                f"  {page:8} {period:6} {cold:8.1f} {first:10.1f} {p50:9.1f} {p99:9.1f} {top:9.1f}",
                flush=True,
            )
    print(f"after: {load()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/vg_h18_1m")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=SLOW_MS,
        help="overviews slower than this are kept and served from memory (1e9: never)",
    )
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    args = parser.parse_args(argv)
    url = args.url.replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(run(url, args.repeat, args.pages, args.slow_ms))


if __name__ == "__main__":
    main()
