"""`python -m bench.console --port P --token T`: a signed-in console left open during a bench
phase, as a browser would keep it: the overview and the decisions page loaded once, then
the feed's rows polled every `--feed-every` s and the overview's panels every
`--overview-every` s, over real HTTP. Says `ready` once signed in; on SIGTERM prints one
JSON line: requests, failures, p50 and max per kind (ms)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

_FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


async def sign_in(http: httpx.AsyncClient, token: str) -> None:
    form = await http.get("/sign-in")
    key = _FORM_KEY.search(form.text)
    if key is None:
        raise SystemExit("the sign-in page has no form key")
    reply = await http.post("/sign-in", data={"token": token, "form_key": key.group(1)})
    if reply.status_code != 303 or "vg_session" not in http.cookies:
        raise SystemExit(f"sign-in failed: {reply.status_code}")


class Tally:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.failed = 0

    async def get(self, http: httpx.AsyncClient, kind: str, path: str) -> None:
        started = time.perf_counter()
        try:
            reply = await http.get(path)
            ok = reply.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            self.times.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
        else:
            self.failed += 1

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"failed": self.failed}
        for kind, times in self.times.items():
            out[kind] = {
                "requests": len(times),
                "p50_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
            }
        return out


async def every(seconds: float, call: Any) -> None:
    while True:
        await asyncio.sleep(seconds)
        await call()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tally, stop = Tally(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    base = f"http://127.0.0.1:{args.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await sign_in(http, args.token)
        await tally.get(http, "overview page", "/?period=24h")
        await tally.get(http, "decisions page", "/decisions")
        print("ready", flush=True)
        pollers = [
            asyncio.create_task(
                every(args.feed_every, lambda: tally.get(http, "feed", "/decisions/rows"))
            ),
            asyncio.create_task(
                every(
                    args.overview_every,
                    lambda: tally.get(http, "overview", "/overview/live?period=24h"),
                )
            ),
        ]
        await stop.wait()
        for task in pollers:
            task.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
    return tally.summary()


class Polling:
    """What an open console did during a phase (`summary`, once it is closed)."""

    summary: dict[str, Any] | None = None


@contextmanager
def polling(port: int, token: str, *, cwd: Path, overview_every: float = 30.0) -> Iterator[Polling]:
    """A console polling the server on `port` until the block ends (in a process of its own,
    as a browser is)."""
    command = [sys.executable, "-m", "bench.console", "--port", str(port), "--token", token]
    command += ["--overview-every", str(overview_every)]
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert process.stdout is not None
    seen = Polling()
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the console poller did not sign in")
        yield seen
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        if out.strip():
            seen.summary = json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--feed-every", type=float, default=2.0, help="as the page: 2 s")
    parser.add_argument("--overview-every", type=float, default=30.0, help="as the page: 30 s")
    summary = asyncio.run(run(parser.parse_args(argv)))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
