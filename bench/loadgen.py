"""The load generator: pre-signed requests over keep-alive HTTP/1.1 connections, either as
fast as the server answers (closed loop) or at a fixed offered rate (open loop, latency
counted from each request's scheduled time so a slow server cannot hide its queue).
Run as its own process; prints "start", "end", then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bench import scheduled
from bench.payloads import signed_requests


@dataclass(slots=True)
class Results:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    allowed: int = 0

    def summary(self, elapsed: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {
            "requests": len(ordered),
            "errors": self.errors,
            "allowed": self.allowed,
            "elapsed_s": round(elapsed, 3),
            "rps": round(len(ordered) / elapsed, 1) if elapsed else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": round(1000 * ordered[-1], 2) if ordered else None,
        }


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head[9:12] + b" " + body


class Load:
    """Shared state of one phase: the requests to hand out and the results."""

    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.next = 0
        self.results = Results()
        self.measured_from = 0.0
        """The open loop's: answers to requests scheduled before it (the warm-up's) are not
        recorded."""

    def take(self) -> bytes:
        request = self.requests[self.next % len(self.requests)]
        self.next += 1
        return request

    def record(self, reply: bytes, latency: float, scheduled: float | None = None) -> None:
        if scheduled is not None and scheduled < self.measured_from:
            return
        if reply.startswith(b"200"):
            self.results.latencies.append(latency)
            self.results.allowed += b'"allow"' in reply
        else:
            self.results.errors += 1


async def closed_loop(load: Load, host: str, port: int, connections: int, until: float) -> None:
    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < until:
            sent = time.perf_counter()
            reply = await exchange(reader, writer, load.take())
            load.record(reply, time.perf_counter() - sent)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def open_loop(
    load: Load, host: str, port: int, connections: int, rate: float, until: float
) -> None:
    queue: asyncio.Queue[float | None] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while (scheduled := await queue.get()) is not None:
            reply = await exchange(reader, writer, load.take())
            load.record(reply, time.perf_counter() - scheduled, scheduled)
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start, sent = time.perf_counter(), 0
    while (now := time.perf_counter()) < until:
        due = int((now - start) * rate) + 1
        for i in range(sent, due):
            queue.put_nowait(start + i / rate)
        sent = due
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.connection_cap:
        return await scheduled_run(args)
    count = int((args.rate or args.max_rps) * (args.duration + args.warmup) * 1.1) + 100
    requests = signed_requests(
        count, host=f"{args.host}:{args.port}", path=args.path, key=args.key,
        secret=args.secret, seed=args.seed,
    )  # fmt: skip
    load = Load(requests)
    if args.rate:
        # One open loop for the warm-up and the measured window, on the same connections:
        # a second loop would open all of them again as the window starts, and its first
        # requests would wait for the connections (a clump of 10-23 ms answers at 300/s).
        begins = time.perf_counter() + args.warmup
        load.measured_from = begins
        start = asyncio.create_task(_start_at(begins))
        await open_loop(load, args.host, args.port, args.connections, args.rate,
                        begins + args.duration)  # fmt: skip
        await start
        print("end", flush=True)
        return _summary(load, args.duration, len(requests))
    if args.warmup:
        await closed_loop(load, args.host, args.port, args.connections,
                          time.perf_counter() + args.warmup)  # fmt: skip
    load.results = Results()
    print("start", flush=True)
    started = time.perf_counter()
    until = started + args.duration
    await closed_loop(load, args.host, args.port, args.connections, until)
    elapsed = time.perf_counter() - started
    print("end", flush=True)
    return _summary(load, elapsed, len(requests))


async def _start_at(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.perf_counter()))
    print("start", flush=True)


def _summary(load: Load, elapsed: float, signed: int) -> dict[str, Any]:
    summary = load.results.summary(elapsed)
    summary["reused_requests"] = max(0, load.next - signed)
    return summary


async def scheduled_run(args: argparse.Namespace) -> dict[str, Any]:
    """Sinch's way (bench/scheduled.py): a warm-up at the carried rate, `duration` at
    `rate`, then (with --then-rate) `then_seconds` at the carried rate; marks "start",
    "drop" and "settled" (`settle` s after the drop) as each begins."""
    carried = args.then_rate or args.rate
    segments = [
        scheduled.Segment(carried, args.warmup),
        scheduled.Segment(args.rate, args.duration, "start"),
    ]
    if args.then_rate:
        settle = min(args.settle, args.then_seconds)
        segments.append(scheduled.Segment(carried, settle, "drop"))
        segments.append(scheduled.Segment(carried, args.then_seconds - settle, "settled"))
    count = int(sum(s.rate * s.seconds for s in segments) * 1.05) + 100
    requests = signed_requests(
        count, host=f"{args.host}:{args.port}", path=args.path, key=args.key,
        secret=args.secret, seed=args.seed,
    )  # fmt: skip
    load = Load(requests)
    answers, pool, started = await scheduled.offer(
        args.host, args.port, segments, cap=args.connection_cap, take=load.take,
        on_mark=lambda mark: print(mark, flush=True),
    )  # fmt: skip
    print("end", flush=True)
    deadline = args.deadline_ms / 1000
    begins = started + args.warmup
    drop = begins + args.duration
    summary = scheduled.window(answers, begins, drop, deadline=deadline)
    summary |= {"elapsed_s": args.duration, **pool.stats()}
    summary["reused_requests"] = max(0, load.next - len(requests))
    if args.then_rate:
        ends = drop + args.then_seconds
        summary["after_drop"] = scheduled.window(answers, drop, ends, deadline=deadline)
        summary["settled"] = scheduled.window(answers, drop + settle, ends, deadline=deadline)
        summary["recovered_after_s"] = scheduled.recovered_after(answers, drop, deadline=deadline)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/sinch/verification/events")
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.0, help="offered req/s; 0: closed loop")
    parser.add_argument("--max-rps", type=float, default=4000.0, help="closed loop: pre-sign per s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--connection-cap", type=int, default=0,
        help="with --rate: send each request at its time on a free connection or a new one, "
        "up to this many (Sinch's way: bench/scheduled.py); 0: --connections, each waiting",
    )  # fmt: skip
    parser.add_argument("--then-rate", type=float, default=0.0, help="with --connection-cap: "
        "then this rate for --then-seconds (the load dropping)")  # fmt: skip
    parser.add_argument("--then-seconds", type=float, default=6.0)
    parser.add_argument(
        "--settle", type=float, default=1.0, help="s after the drop not counted as settled"
    )
    parser.add_argument(
        "--deadline-ms", type=float, default=400.0, help="answers within it are counted"
    )
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
