"""The counter model in Redis: one hash per counter key and bucket, fields per column.

Each call is part of one Lua script run, so applying an attempt's changes and reading its
windows is atomic: concurrent attempts on one key see distinct totals, on every worker and
host. Calls made while a script run is under way wait and go together in the next one, in
the order they were made (`_Pipe`): under load one round trip carries several attempts'
counts, reads and settles, and a lone call is sent at once. Needs a single Redis primary
(keys are built in Lua).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from app.store.counter_model import (
    READS,
    BucketClock,
    Capabilities,
    Changes,
    CounterDeltas,
    Reads,
    Totals,
)

# Short hash fields per column (the stored format: kept across versions).
_FIELDS = {
    "attempts": "a",
    "spend_micros": "s",
    "allowed": "al",
    "allowed_spend_micros": "as",
    "successes": "su",
    "pending": "p",
    "pending_spend_micros": "ps",
}
_READ_FIELDS = {measure: [_FIELDS[c] for c in columns] for measure, columns in READS.items()}

# Each minute's counts also go to their hour's hash (":h<hour start>"). A window's whole
# hours are read from their hour hashes; the part of an hour it covers at either end is
# read minute by minute, or as the hour's total less the hour's other minutes where that
# takes fewer reads: at most 2 x 31 + 24 reads for a day, where reading every minute took
# 1,440 (the starter policy's 24 h conversion window made Redis the bottleneck at ~200
# attempts/s). Hours are trusted from the first whole hour after the marker: 0 where the
# prefix held no counts when it was set (all hours), else the minute it was set, as minutes
# counted before (by a version without hour hashes) have none, and are read as minutes.
# A call's windows on one key read each hash once, every field they need in one HMGET (the
# starter's 10 windows on 3 keys read 646 hashes per attempt when each window read its own
# minutes, ~120 now).
#
# ARGV: prefix, bucket size, ttl, hour (0: no hour hashes), then the calls as JSON: a list
# of [changes, current bucket, reads], changes a list of [bucket, keys, [[field, delta]...]],
# reads a list of [key, first bucket, fields]. Returns, per call, its totals joined by ","
# and the calls joined by "|".
_SCRIPT = """
local prefix, size, ttl, hour = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local calls = cjson.decode(ARGV[5])
local marker = prefix .. 'hours-from'
local marked, trusted, expiring = false, nil, {}
local function targets(key, bucket)
  local out = {{prefix .. key .. ':' .. bucket, ttl}}
  if hour > 0 then out[2] = {prefix .. key .. ':h' .. (bucket - bucket % hour), ttl + hour} end
  return out
end
local function apply(changes)
  for _, change in ipairs(changes) do
    local bucket, keys, deltas = change[1], change[2], change[3]
    if hour > 0 and #keys > 0 and not marked then
      redis.call('SET', marker, bucket, 'NX')
      marked = true
    end
    for _, key in ipairs(keys) do
      for _, target in ipairs(targets(key, bucket)) do
        for _, d in ipairs(deltas) do redis.call('HINCRBY', target[1], d[1], d[2]) end
        if not expiring[target[1]] then
          if redis.call('TTL', target[1]) < 0 then redis.call('EXPIRE', target[1], target[2]) end
          expiring[target[1]] = true
        end
      end
    end
  end
end
local function trusted_from()
  if hour > 0 and not trusted then
    local from = tonumber(redis.call('GET', marker))
    if from then trusted = from - from % hour + hour end
  end
  return trusted
end
local function read(current, queries)
  local fields, slot = {}, {}
  for _, q in ipairs(queries) do
    local key = q[1]
    if not fields[key] then fields[key], slot[key] = {}, {} end
    for _, f in ipairs(q[3]) do
      if not slot[key][f] then
        table.insert(fields[key], f)
        slot[key][f] = #fields[key]
      end
    end
  end
  local from, seen, out = trusted_from(), {}, {}
  for i, q in ipairs(queries) do
    local key, b, wanted, total = q[1], q[2], q[3], 0
    local function add(name, sign)
      local values = seen[name]
      if not values then
        values = redis.call('HMGET', name, unpack(fields[key]))
        seen[name] = values
      end
      for _, f in ipairs(wanted) do
        total = total + sign * (tonumber(values[slot[key][f]]) or 0)
      end
    end
    local function minutes(first, last, sign)
      for m = first, last, size do add(prefix .. key .. ':' .. m, sign) end
    end
    while b <= current do
      local h = hour > 0 and b - b % hour or nil
      if from and h >= from then
        -- The window's minutes b..last of hour h: read them, or read the hour's total less
        -- its other minutes, whichever takes fewer reads (the minutes before b must not
        -- have expired; those after `current` are in the future, mostly none).
        local final = h + hour - size
        local last = math.min(final, current)
        local before, after = (b - h) / size, (final - last) / size
        local alive = before == 0 or h + ttl > current + size
        if alive and 1 + before + after < (last - b) / size + 1 then
          add(prefix .. key .. ':h' .. h, 1)
          minutes(h, b - size, -1)
          minutes(last + size, final, -1)
        else
          minutes(b, last, 1)
        end
        b = last + size
      else
        add(prefix .. key .. ':' .. b, 1)
        b = b + size
      end
    end
    out[i] = string.format('%.0f', total)
  end
  return table.concat(out, ',')
end
local results = {}
for i, call in ipairs(calls) do
  apply(call[1])
  results[i] = #call[3] > 0 and read(call[2], call[3]) or ''
end
return table.concat(results, '|')
"""

HOUR = 3600
BATCH = 256  # calls per script run at most: as many as a PostgreSQL batch (intake/lanes.py)


class RedisCounters:
    """Counters shared by every worker and host through one Redis primary."""

    capabilities = Capabilities()

    def __init__(
        self, redis: Redis, *, bucket_seconds: int, retention_seconds: int, prefix: str = "vg:c:"
    ) -> None:
        self.redis = redis
        self.clock = BucketClock(bucket_seconds)
        self.ttl = retention_seconds + 2 * bucket_seconds
        self.prefix = prefix
        # Hour hashes only where minutes tile an hour exactly (any divisor of 3600 does).
        self.hour = HOUR if bucket_seconds < HOUR and HOUR % bucket_seconds == 0 else 0
        self.marker = f"{prefix}hours-from"
        self._script = redis.register_script(_SCRIPT)
        self._pipe = _Pipe(self._send)

    async def start(self, now: datetime | None = None) -> None:
        """Set the marker, once for all workers and hosts: hour totals are trusted at once
        where the prefix holds no counts yet, else from the next whole hour."""
        if not self.hour or await self.redis.exists(self.marker):
            return
        holds_counts = False
        async for _key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            holds_counts = True
            break
        value = self.clock.bucket(now or datetime.now(UTC)) if holds_counts else 0
        await self.redis.set(self.marker, value, nx=True)

    async def close(self) -> None:
        await self._pipe.drain()
        await self.redis.aclose()

    async def apply(self, conn: Any, changes: Changes) -> None:
        if any(c.keys for c in changes):
            await self._pipe.call([_changes(changes), 0, []])

    async def observe(
        self, conn: Any, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        assert version is None, "Redis counters cannot check the policy version"
        return await self._run(_changes(changes), reads)

    async def read(self, conn: Any, reads: Reads) -> Totals:
        return await self._run([], reads) if reads.queries else {}

    async def _run(self, changes: list[Any], reads: Reads) -> Totals:
        queries, now = reads.queries, reads.now
        wanted = [
            [q.key, self.clock.oldest(now, q.window_seconds), _READ_FIELDS[q.measure]]
            for q in queries
        ]
        raw = await self._pipe.call([changes, self.clock.bucket(now), wanted])
        totals = raw.split(",") if queries else []
        return {q: int(v) for q, v in zip(queries, totals, strict=True)}

    async def _send(self, calls: list[list[Any]]) -> list[str]:
        """One script run for `calls`, in order; each one's totals, joined by ","."""
        payload = json.dumps(calls, separators=(",", ":"))
        args: list[str | int] = [self.prefix, self.clock.size, self.ttl, self.hour, payload]
        raw = await self._script(args=args)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return text.split("|")


def _changes(changes: Sequence[CounterDeltas]) -> list[Any]:
    """The changes as the script takes them: [bucket, keys, [[field, delta], ...]]."""
    out: list[Any] = []
    for change in changes:
        deltas = [[_FIELDS[c], d] for c, d in change.deltas.items() if d]
        out.append([change.bucket, list(change.keys), deltas])
    return out


class _Pipe:
    """Calls made while a script run is under way wait for it, then go in one run together,
    in the order they were made: batches grow with the load, and a lone call is sent at
    once. A run that fails fails each of its calls (Redis runs a script's commands up to
    the failing one: as when each call was a run of its own, a failed call may be applied
    in part)."""

    def __init__(self, send: Any, limit: int = BATCH) -> None:
        self._send = send
        self._limit = limit
        self._queue: list[tuple[list[Any], asyncio.Future[str]]] = []
        self._task: asyncio.Task[None] | None = None

    async def call(self, call: list[Any]) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.append((call, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write(), name="verifyguard-redis-counters")
        return await future

    async def drain(self) -> None:
        """Wait until every call made so far has been sent and answered."""
        loop = asyncio.get_running_loop()
        while self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
            try:
                results = await self._send([call for call, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future in batch + self._queue:  # cancelled: no caller is left waiting
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
