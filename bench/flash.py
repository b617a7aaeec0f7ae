"""`python -m bench.flash`: flash crowds against VerifyGuard on a fresh store.

A quiet server (QUIET req/s: its batches are of one) gets a flash — RATE request events a
second for SECONDS, e.g. 600 in 0.1 s — and then the quiet rate again, offered as Sinch
offers them (bench/scheduled.py: each request at its time, on a free connection or a new
one). A flash well within what the server decides before the deadline should be decided,
not shed; one past it should be cut at what fits, every answer still within the deadline.
Per flash it prints how many answers were the fallback (shed at admission: `overload`;
decided too late: `deadline`, from the server's /metrics), the latency from the scheduled
send (p50, p99, max) and the share within the deadline, from the send and from the write.

    .venv/bin/python -m bench.flash --flashes 4000x0.1,6000x0.1,8000x0.1 --rounds 2
    .venv/bin/python -m bench.flash --app-dir /work/prev   # a checkout to compare with
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import history, procs, scheduled
from bench.payloads import signed_requests
from bench.run import (
    CALLBACK_PATH,
    KEY,
    ROOT,
    SECRET,
    fallbacks_by_cause,
    fresh_store,
    verifyguard,
)


async def flash(port: int, rate: float, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    """One flash between two quiet spells: its figures."""
    segments = [
        scheduled.Segment(args.quiet_rate, args.quiet_seconds),
        scheduled.Segment(rate, seconds, "flash"),
        scheduled.Segment(args.quiet_rate, args.after_seconds),
    ]
    count = int(sum(s.rate * s.seconds for s in segments)) + 100
    requests = iter(
        signed_requests(
            count, host=f"127.0.0.1:{port}", path=CALLBACK_PATH, key=KEY, secret=SECRET,
            seed=uuid.uuid4().int % 10**9,
        )
    )  # fmt: skip
    before = fallbacks_by_cause(port)
    answers, pool, started = await scheduled.offer(
        "127.0.0.1", port, segments, cap=args.connection_cap, take=lambda: next(requests)
    )
    after = fallbacks_by_cause(port)
    begins = started + args.quiet_seconds
    window = scheduled.window(answers, begins, begins + seconds, deadline=args.deadline_ms / 1000)
    return window | {
        "flash": f"{rate:g}/s x {seconds:g} s",
        "requests": window["requests"] + window["errors"],  # offered in the flash
        "fallbacks": {
            cause: round(total - before.get(cause, 0.0))
            for cause, total in after.items()
            if total > before.get(cause, 0.0)
        },
        "connections_opened": pool.opened,
    }


def _flashes(text: str) -> list[tuple[float, float]]:
    pairs = []
    for item in text.split(","):
        rate, _, seconds = item.partition("x")
        pairs.append((float(rate), float(seconds)))
    return pairs


@contextmanager
def served(args: argparse.Namespace, workdir: Path) -> Iterator[int]:
    """A fresh store's server, its verified history seeded: its port."""
    url = "sqlite+aiosqlite:///unused" if args.store == "sqlite" else args.postgres
    with fresh_store(verifyguard(url, args.store), workdir, args) as target:
        port = args.port or procs.free_port()
        cwd = workdir / f"server-{uuid.uuid4().hex[:6]}"
        cwd.mkdir()
        with procs.uvicorn_server(
            target.factory, port=port, env=target.env, log=cwd / "server.log", cwd=cwd,
            app_dir=args.app_dir,
        ):  # fmt: skip
            history.seed_verified(port, key=KEY, secret=SECRET, path=CALLBACK_PATH)
            yield port


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-prefix", default="vg_bench_")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to serve")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--flashes", type=_flashes, default=_flashes("2000x0.2,4000x0.1,6000x0.1,8000x0.1"),
        help="RATExSECONDS, comma-separated: request events a second, for how long",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="each list of flashes, again")
    parser.add_argument("--quiet-rate", type=float, default=20.0)
    parser.add_argument("--quiet-seconds", type=float, default=5.0, help="before each flash")
    parser.add_argument("--after-seconds", type=float, default=2.0)
    parser.add_argument("--deadline-ms", type=float, default=400.0)
    parser.add_argument("--connection-cap", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vg-flash-") as tmp, served(args, Path(tmp)) as port:
        for _ in range(args.rounds):
            for rate, seconds in args.flashes:
                figures = asyncio.run(flash(port, rate, seconds, args))
                print(_line(figures), flush=True)
                time.sleep(0.5)


def _line(figures: dict[str, Any]) -> str:
    shed = ", ".join(f"{k} {v}" for k, v in sorted(figures["fallbacks"].items())) or "none"
    return (
        f"flash {figures['flash']} ({figures['requests']} request events): fallbacks {shed}; "
        f"from the scheduled send p50 {figures['p50_ms']} p99 {figures['p99_ms']} max "
        f"{figures['max_ms']} ms, {100 * (figures['within_deadline'] or 0):.1f}% within the "
        f"deadline ({100 * (figures['within_deadline_from_write'] or 0):.1f}% from the write; "
        f"the generator wrote late by p99 {figures['unsent_p99_ms']} ms); errors "
        f"{figures['errors']}"
    )


if __name__ == "__main__":
    main()
