"""`python -m bench.redis_cost`: the Redis server's CPU per 1,000 attempts of the starter
policy's windows, at a chosen minute of the hour (the old layout's reads depended on it).

Straight through the counters (store/redis_counters.py), no app: a day of history on the
country and a range (an attempt every 5 minutes), then --count attempts, --concurrency at a
time, each counted with its 10 windows read, settled allowed and credited a success, as the
intake does. Prints the server's CPU (INFO cpu) and the commands the scripts ran (INFO
commandstats) per attempt. Both are server-wide: give it a Redis server of its own
(`redis-server --port N --save ''`). With --app-dir, the counters of another checkout (a
same-run comparison with a former version).

For a figure load does not change, run the server under callgrind and take the difference
of two counts (the day of history and the start cancel out):
    valgrind --tool=callgrind --callgrind-out-file=cg.out redis-server --port N --save ''
    callgrind_control -z PID; python -m bench.redis_cost --redis ... --minutes 0 --count 300
    callgrind_control -d PID   # then again with --count 900: (Ir 900 - Ir 300) / 600
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

STARTER_READS = [  # (key, window, measure): as tests/store/test_redis_counters.py
    ("country", 86_400, "attempts"),
    ("range", 3600, "attempts"),
    ("number", 3600, "attempts"),
    ("country", 3600, "allowed"),
    ("country", 3600, "successes"),
    ("range", 3600, "allowed"),
    ("country", 3600, "allowed_spend"),
    ("number", 3600, "successes"),
    ("country", 86_400, "successes"),
    ("range", 3600, "successes"),
]
COMMANDS = (
    "evalsha",
    "fcall",
    "hmget",
    "hset",
    "hincrby",
    "ttl",
    "expire",
    "hlen",
    "hgetall",
    "get",
    "set",
)


async def _cpu(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(url: str, minute: int, count: int, concurrency: int) -> None:
    model = importlib.import_module("app.store.counter_model")
    counters = importlib.import_module("app.store.redis_counters")
    clock = model.BucketClock(60)
    client = Redis.from_url(url)
    prefix = f"vgbench:{uuid.uuid4().hex[:8]}:c:"
    backend = counters.RedisCounters(
        client, bucket_seconds=60, retention_seconds=8 * 86_400, prefix=prefix
    )
    base = datetime(2026, 12, 5, 9, minute, tzinfo=UTC)
    await backend.start(base - timedelta(days=2))
    moment = base - timedelta(days=1, minutes=5)
    while moment < base:
        keys = {"country:US", "range-3:+1201526"}
        past = model.Attempt.of(keys, {"country:US"}, clock=clock, now=moment, spend=8500)
        await backend.apply(None, past.counted())
        moment += timedelta(minutes=5)
    rng = random.Random(1)  # noqa: S311 (load, not secrets)

    async def one() -> None:
        now = base + timedelta(seconds=rng.randint(0, 59))
        keys = {
            "country": "country:US",
            "range": f"range-3:+120152{rng.randint(0, 9)}",
            "number": f"number:+1201526{rng.randint(0, 9999):04d}",
        }
        every, held = set(keys.values()), {keys["country"], keys["range"]}
        attempt = model.Attempt.of(every, held, clock=clock, now=now, spend=8500)
        reads = [model.WindowQuery(keys[k], w, m) for k, w, m in STARTER_READS]
        await backend.observe(None, attempt.counted(), model.Reads(reads, now))
        settle = attempt.settled(allowed=True)  # None: holds are written as allowed
        if settle is not None:
            await backend.apply(None, [settle])
        await backend.apply(None, [model.succeeded(every, clock=clock, requested_at=now)])

    await client.config_resetstat()
    before = await _cpu(client)
    for start in range(0, count, concurrency):
        await asyncio.gather(*(one() for _ in range(min(concurrency, count - start))))
    used = await _cpu(client) - before
    stats: dict[str, Any] = await client.info("commandstats")
    per = {c: stats.get(f"cmdstat_{c}", {}).get("calls", 0) / count for c in COMMANDS}
    calls = ", ".join(f"{c.upper()} {n:.1f}" for c, n in per.items() if n)
    print(f"minute {minute:2d}: {1000 * used / count:.3f} s Redis CPU per 1,000 attempts; {calls}")
    names = [key async for key in client.scan_iter(f"{prefix}*")]
    for i in range(0, len(names), 500):
        await client.delete(*names[i : i + 500])
    await backend.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", required=True, help="a Redis database on a server of its own")
    parser.add_argument("--minutes", default="0,10,20,30,40,50")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--app-dir", type=Path, default=None, help="import app from there")
    args = parser.parse_args(argv)
    if args.app_dir is not None:
        sys.path.insert(0, str(args.app_dir.resolve()))
        for name in [n for n in sys.modules if n == "app" or n.startswith("app.")]:
            del sys.modules[name]
    for minute in (int(m) for m in args.minutes.split(",")):
        asyncio.run(measure(args.redis, minute, args.count, args.concurrency))


if __name__ == "__main__":
    main()
