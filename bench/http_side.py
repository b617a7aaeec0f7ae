"""`python -m bench.http_side`: the CPU of the callback's HTTP side per request event, in process.

Everything from the ASGI call to the decision and back (headers, body, signature, routing,
the answer built and rendered, metrics, the `decision.made` line), with the decision itself
replaced by a fixed allow: what issue 17's HTTP side can change, free of the database's and
the engine's share. The app (create_app and its lifespan) on a fresh SQLite file; --count
signed request events, one at a time through the ASGI interface, per round. Prints the
process's CPU µs per request event (load inflates it somewhat: compare two checkouts
alternately, from each one's root).

For a figure load does not change, count instructions with callgrind; the bench switches
counting on around the measured loop only:
    BENCH_CALLGRIND=1 valgrind --tool=callgrind --instr-atstart=no \\
        --callgrind-out-file=cg.out .venv/bin/python -m bench.http_side --count 2000 --rounds 1
    grep ^totals: cg.out    # divided by --count: instructions per request event
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.store.migrate import upgrade
from bench.payloads import legit_request_events
from bench.request_cpu import _body_and_headers, _call
from bench.run import verifyguard


def _callgrind(state: str) -> None:
    if os.environ.get("BENCH_CALLGRIND"):
        command = ["callgrind_control", "-i", state, str(os.getpid())]
        subprocess.run(command, capture_output=True, check=False)  # noqa: S603


async def _measure(url: str, args: argparse.Namespace) -> list[float]:
    from app.main import create_app
    from app.rules.decision import Decision
    from app.services.admission import Ticket
    from app.services.intake.answers import build_answer
    from app.services.intake.deliveries import Delivery, Reply
    from app.sinch.events import VerificationRequestEvent

    for name, value in verifyguard(url, "bench").env.items():
        os.environ[name] = value
    app = create_app()
    decision = Decision(action="allow", reason="default", mode="default")
    rng = random.Random(3)  # noqa: S311 - load shape, not secrets
    rows = []
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        reporter, answers = runtime.intake._reporter, runtime.settings.answers

        admission = runtime.outage.admission

        async def decided(delivery: Delivery, event: VerificationRequestEvent) -> Reply:
            started = time.perf_counter()
            body = build_answer(method=event.method, decision=decision, defaults=answers)
            reporter.decision_made(event.id, decision, started, outcome="decided")
            return Reply(body=body)

        async def admitted(
            delivery: Delivery, event: VerificationRequestEvent, ticket: Ticket | None
        ) -> Reply:
            if ticket is not None:  # asked before the parse (intake/dispatch.py)
                admission.release(ticket)
            return await decided(delivery, event)

        # The decision's own work left out, on purpose.
        runtime.intake._decide = decided
        runtime.intake._decide_admitted = admitted
        for _ in range(args.rounds):
            signed = [_body_and_headers(e) for e in legit_request_events(rng, args.count)]
            answered: dict[str, Any] = {}
            _callgrind("on")
            started = time.process_time()
            for body, headers in signed:
                answered = json.loads(await _call(app, body, headers))
            cpu = time.process_time() - started
            _callgrind("off")
            assert answered.get("action") == "allow", answered
            rows.append(round(cpu / args.count * 1e6, 1))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vg-http-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'http.db'}"
        upgrade(url)
        os.chdir(tmp)  # the spool directory lands here
        rows = asyncio.run(_measure(url, args))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    for row in rows:
        print(json.dumps({"cpu_us_per_request_event": row}))


if __name__ == "__main__":
    main()
