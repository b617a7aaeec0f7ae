"""`python -m bench.policy_churn`: a closed loop of request events while an operator edits
the policy, as during an attack (a number added to the blocklist every few seconds).

Each edit bumps the policy's version, and every request event in flight then reloads the
policy before it is decided. With large lists that reload is what costs: this bench serves
the starter policy with `--entries` numbers in each of its two lists (allowlist and
blocklist), runs `bench.run`'s closed loop, and POSTs one blocklist entry every `--every`
seconds through the admin API. It prints the loop's figures, the fallback answers by cause,
how long each edit took to answer, and how many times the server compiled the policy.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import procs, wrk
from bench.run import (
    CALLBACK_PATH,
    CONSOLE_TOKEN,
    KEY,
    SECRET,
    Fallbacks,
    Target,
    fallbacks_by_cause,
    fresh_store,
    verifyguard,
)

CHUNK = 5000  # entries per POST while seeding the lists


def seed_lists(client: httpx.Client, entries: int, seed: int) -> None:
    """`entries` distinct Swedish mobiles in each of the starter policy's two lists (not the
    closed loop's numbers: those are drawn elsewhere; an allowlisted one would only skip
    the counters)."""
    rng = random.Random(seed)  # noqa: S311 - sample numbers, not secrets
    for name in ("allowlist", "blocklist"):
        numbers = {f"+46709{rng.randrange(10**6):06d}" for _ in range(entries * 2)}
        values = sorted(numbers)[:entries]
        for start in range(0, len(values), CHUNK):
            chunk = [{"value": v} for v in values[start : start + CHUNK]]
            reply = client.post(f"/admin/lists/{name}/entries", json={"entries": chunk})
            reply.raise_for_status()


class Churn:
    """One blocklist entry POSTed every `every` seconds until stopped; each edit's seconds."""

    def __init__(self, client: httpx.Client, every: float) -> None:
        self.client = client
        self.every = every
        self.seconds: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def phase(self, started: bool) -> None:
        if started:
            self._thread.start()
        else:
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.every):
            n += 1
            began = time.perf_counter()
            reply = self.client.post(
                "/admin/lists/blocklist/entries",
                json={"entries": [{"value": f"+46708{n:06d}", "note": "churn"}]},
            )
            if reply.status_code == 200:
                self.seconds.append(time.perf_counter() - began)
            else:
                self.failed += 1


def compiles(port: int) -> float | None:
    """The server's policy loads so far (verifyguard_policy_loads_total)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith("verifyguard_policy_loads_total"):
            return float(line.rsplit(" ", 1)[1])
    return None


def run(target: Target, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = args.port or procs.free_port()
    name = f"churn-{uuid.uuid4().hex[:6]}"
    cwd = workdir / name
    cwd.mkdir()
    headers = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
    with (
        fresh_store(target, workdir, args) as store,
        procs.uvicorn_server(
            store.factory, port=port, env=store.env, log=workdir / f"{name}.log", cwd=cwd,
            app_dir=args.app_dir,
        ) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client,
    ):  # fmt: skip
        began = time.perf_counter()
        seed_lists(client, args.entries, args.seed)
        seeded_s = time.perf_counter() - began
        churn = Churn(client, args.every) if args.every > 0 else None
        fallbacks = Fallbacks(port)
        causes_before = fallbacks_by_cause(port)
        compiles_before = compiles(port)

        def phase(started: bool) -> None:
            fallbacks.phase(started)
            if churn is not None:
                churn.phase(started)

        row = wrk.closed_loop(
            server.pid, port, workdir=workdir, key=KEY, secret=SECRET, path=CALLBACK_PATH,
            duration=args.duration, connections=args.connections, max_rps=args.max_rps,
            seed=uuid.uuid4().int % 10**9, phase=phase,
        )  # fmt: skip
        causes = {
            cause: round(count - causes_before.get(cause, 0.0))
            for cause, count in fallbacks_by_cause(port).items()
            if count - causes_before.get(cause, 0.0)
        }
        compiled = compiles(port)
    edits = churn.seconds if churn is not None else []
    return {
        "target": target.name,
        "entries_per_list": args.entries,
        "seeded_s": round(seeded_s, 1),
        **{k: row[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "max_ms", "server_cpu")},
        "fallbacks": fallbacks.counted,
        "fallback_causes": causes,
        "edits": len(edits),
        "edits_failed": churn.failed if churn is not None else 0,
        "edit_p50_ms": round(statistics.median(edits) * 1000, 1) if edits else None,
        "edit_max_ms": round(max(edits) * 1000, 1) if edits else None,
        "compiles": (
            None
            if compiled is None or compiles_before is None
            else round(compiled - compiles_before)
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="postgres", help="postgres, redis, sqlite")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--database-prefix", default="vg_churn_")
    parser.add_argument("--entries", type=int, default=20000, help="numbers in each list")
    parser.add_argument("--every", type=float, default=1.5, help="seconds between edits; 0: none")
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-rps", type=float, default=4000.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--app-dir", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    if not wrk.available():
        sys.exit("wrk is not installed (apt-get install wrk)")
    targets = {
        "postgres": verifyguard("postgresql+asyncpg://per-phase", "postgres"),
        "redis": verifyguard("postgresql+asyncpg://per-phase", "postgres", redis_url=args.redis),
        "sqlite": verifyguard("sqlite+aiosqlite:///per-phase", "sqlite"),
    }
    chosen = [targets[name.strip()] for name in args.targets.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="vg-churn-") as tmp:
        for _ in range(args.rounds):
            for target in chosen:
                print(json.dumps(run(target, Path(tmp), args)), flush=True)


if __name__ == "__main__":
    main()
