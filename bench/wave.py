"""`python -m bench.wave`: PostgreSQL closed loops of two checkouts, alternated, with the
batch sizes each server formed (its /metrics, read before it stops).

A closed loop at --connections moves as waves: the batch sizes say how each wave was cut
(a lone first request making a batch of 1, the rest the next). Each run: a fresh migrated
database, one uvicorn worker of `--app-dir` (the checkout's app), the verified history,
wrk's warm-up and measured run (bench/wrk.py), then the counting and store batch-size
histograms (`verifyguard_count_batch_size`, `verifyguard_decision_batch_size`) of the whole
server life minus the warm-up's. Runs alternate A B B A … (`--order`) so that neither
checkout always runs on a warmer machine; wall-clock figures stay noisy on a shared
machine, the batch figures much less so. With --together each pair of --order runs at
the same time (on --port and --port+1, measured from the same instant): both see the same
machine load, at twice the load. `--variant C='{"ENV": "1"}'` makes the runs lettered C
serve checkout B with that environment (a switch compared within one checkout).

    .venv/bin/python -m bench.wave --a /work/base --b . --order ABBA --port 18301
    .venv/bin/python -m bench.wave --a /work/base --b . --order ABBA --together --port 18310
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import history, procs, wrk
from bench.run import CALLBACK_PATH, KEY, SECRET, VERIFYGUARD_FACTORY, fresh_store, verifyguard

_SETUP = threading.Lock()
HISTOGRAMS = {
    "verifyguard_count_batch_size": "count",
    "verifyguard_decision_batch_size": "store",
}


def batch_sizes(port: int) -> dict[str, dict[str, float]]:
    """Per histogram: batches, items, and the batches of each bucket (cumulative `le`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        short = HISTOGRAMS.get(family.name)
        if short is None:
            continue
        figures = found.setdefault(short, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                figures[f"le_{sample.labels['le']}"] = sample.value
            elif sample.name.endswith("_count"):
                figures["batches"] = sample.value
            elif sample.name.endswith("_sum"):
                figures["items"] = sample.value
    return found


def _minus(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    return {
        stage: {key: value - before.get(stage, {}).get(key, 0.0) for key, value in got.items()}
        for stage, got in after.items()
    }


def summary(sizes: dict[str, dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stage, got in sizes.items():
        batches, items = got.get("batches", 0.0), got.get("items", 0.0)
        ones = got.get("le_1.0", 0.0)
        out[stage] = {
            "batches": int(batches),
            "items": int(items),
            "mean": round(items / batches, 1) if batches else None,
            "of_1": int(ones),
            "2-8": int(got.get("le_8.0", 0.0) - ones),
            "9-32": int(got.get("le_32.0", 0.0) - got.get("le_8.0", 0.0)),
            "33-64": int(got.get("le_64.0", 0.0) - got.get("le_32.0", 0.0)),
            ">64": int(batches - got.get("le_64.0", 0.0)),
        }
    return out


def one_run(
    app_dir: Path,
    workdir: Path,
    args: argparse.Namespace,
    label: str,
    extra: dict[str, str],
    port: int | None = None,
    barrier: threading.Barrier | None = None,
) -> dict[str, Any]:
    port = port or args.port
    target = verifyguard("postgresql+asyncpg://per-run", "postgres")
    env = {**args.env, **extra}
    factory = args.factory or VERIFYGUARD_FACTORY
    name = f"{label}-{uuid.uuid4().hex[:6]}"
    cwd = workdir / name
    cwd.mkdir()
    with _SETUP:  # migrations of two databases at once tangle (alembic's global context)
        store = fresh_store(target, workdir, args)
        fresh = store.__enter__()
    try:
        with procs.uvicorn_server(
            factory,
            port=port,
            env={**fresh.env, **env},
            log=workdir / f"{name}.log",
            cwd=cwd,
            app_dir=app_dir,
        ) as server:
            history.seed_verified(port, key=KEY, secret=SECRET, path=CALLBACK_PATH)
            marks: dict[str, Any] = {}

            def phase(started: bool) -> None:
                if started:
                    if barrier is not None:
                        barrier.wait(timeout=120)  # both of a pair measured at once
                    marks["before"] = batch_sizes(port)

            row = wrk.closed_loop(
                server.pid, port, workdir=workdir, key=KEY, secret=SECRET,
                path=CALLBACK_PATH, duration=args.duration, connections=args.connections,
                max_rps=args.max_rps, seed=uuid.uuid4().int % 10**9, phase=phase,
            )  # fmt: skip
            sizes = _minus(batch_sizes(port), marks["before"])
    finally:
        store.__exit__(None, None, None)
    keep = {k: row[k] for k in ("rps", "p50_ms", "p99_ms", "p999_ms", "errors", "server_cpu")}
    return {"run": label, "app": str(app_dir), **keep, "postgres_cpu": row["postgres_cpu"]} | {
        "batches": summary(sizes),
        "log": str(workdir / f"{name}.log"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", type=Path, required=True, help="checkout A (e.g. main)")
    parser.add_argument("--b", type=Path, required=True, help="checkout B (this change)")
    parser.add_argument("--order", default="ABBA")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-prefix", default="vg_bench_")
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-rps", type=float, default=4000.0)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--factory", default=None, help="module:function (default: the app's)")
    parser.add_argument(
        "--env", type=json.loads, default={}, help="extra server environment, as JSON"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="LETTER=JSON: runs of LETTER in --order serve checkout B with this environment",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="--order in pairs (e.g. ABBA: AB, BA), both of a pair at the same time on "
        "--port and --port+1: the same machine load for both",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the servers' logs here")
    args = parser.parse_args(argv)
    rows = []
    with TemporaryDirectory(prefix="vg-wave-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        variants = {v.split("=", 1)[0]: json.loads(v.split("=", 1)[1]) for v in args.variant}
        if args.together:
            _together(args, workdir, variants)
            return
        for i, which in enumerate(args.order):
            app_dir = (args.a if which == "A" else args.b).resolve()
            extra = variants.get(which, {})
            row = one_run(app_dir, workdir, args, f"{i + 1}{which}", extra)
            print(json.dumps(row), flush=True)
            rows.append(row)


def _together(args: argparse.Namespace, workdir: Path, variants: dict[str, Any]) -> None:
    pairs = [args.order[i : i + 2] for i in range(0, len(args.order), 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for n, pair in enumerate(pairs):
            barrier = threading.Barrier(2)
            runs = [
                pool.submit(
                    one_run,
                    (args.a if which == "A" else args.b).resolve(),
                    workdir,
                    args,
                    f"{n + 1}{which}{slot}",
                    variants.get(which, {}),
                    args.port + slot,
                    barrier,
                )
                for slot, which in enumerate(pair)
            ]
            for run in runs:
                print(json.dumps(run.result()), flush=True)


if __name__ == "__main__":
    main()
