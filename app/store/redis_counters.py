"""The counter model in Redis: one hash per counter key and bucket, fields per column.

Each call is one Lua script, so applying an attempt's changes and reading its windows is
atomic: concurrent attempts on one key see distinct totals, on every worker and host.
Needs a single Redis primary (keys are built in Lua).
"""

from __future__ import annotations

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
    WindowQuery,
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

# Each minute's counts also go to their hour's hash (":h<hour start>"). A window is read
# minute by minute up to its first whole hour, hour by hour while whole hours fit, then
# minute by minute again: at most 2 x 59 + 24 reads for a day, where reading every minute
# took 1,440 (the starter policy's 24 h conversion window made Redis the bottleneck at ~200
# attempts/s). Hours are trusted from the first whole hour after the marker: 0 where the
# prefix held no counts when it was set (all hours), else the minute it was set, as minutes
# counted before (by a version without hour hashes) have none, and are read as minutes.
#
# ARGV: prefix, bucket size, ttl, hour (0: no hour hashes), then the changes: their count,
# and for each its bucket, key count, keys, field count, (field, delta) pairs; then the
# reads: the current bucket, their count, and for each its key, first bucket, field count,
# fields. Returns one total per read.
_SCRIPT = """
local prefix, size, ttl, hour = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local marker = prefix .. 'hours-from'
local at = 5
local function take() local v = ARGV[at]; at = at + 1; return v end
local function targets(key, bucket)
  local out = {{prefix .. key .. ':' .. bucket, ttl}}
  if hour > 0 then out[2] = {prefix .. key .. ':h' .. (bucket - bucket % hour), ttl + hour} end
  return out
end
for _ = 1, tonumber(take()) do
  local bucket, keys, deltas = tonumber(take()), {}, {}
  for i = 1, tonumber(take()) do keys[i] = take() end
  for i = 1, tonumber(take()) do deltas[i] = {take(), tonumber(take())} end
  if hour > 0 and #keys > 0 then redis.call('SET', marker, bucket, 'NX') end
  for _, key in ipairs(keys) do
    for _, target in ipairs(targets(key, bucket)) do
      for _, d in ipairs(deltas) do redis.call('HINCRBY', target[1], d[1], d[2]) end
      if redis.call('TTL', target[1]) < 0 then redis.call('EXPIRE', target[1], target[2]) end
    end
  end
end
local function read(k, fields)
  local total = 0
  for _, v in ipairs(redis.call('HMGET', k, unpack(fields))) do
    total = total + (tonumber(v) or 0)
  end
  return total
end
local current = tonumber(take())
local trusted = nil
if hour > 0 then
  local from = tonumber(redis.call('GET', marker))
  if from then trusted = from - from % hour + hour end
end
local out = {}
for q = 1, tonumber(take()) do
  local key, b, fields = take(), tonumber(take()), {}
  for i = 1, tonumber(take()) do fields[i] = take() end
  local total = 0
  while b <= current do
    if trusted and b % hour == 0 and b >= trusted and b + hour <= current + size then
      total = total + read(prefix .. key .. ':h' .. b, fields)
      b = b + hour
    else
      total = total + read(prefix .. key .. ':' .. b, fields)
      b = b + size
    end
  end
  out[q] = tostring(total)
end
return out
"""

HOUR = 3600


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
        await self.redis.aclose()

    async def apply(self, conn: Any, changes: Changes) -> None:
        if any(c.keys for c in changes):
            await self._run(changes, (), 0)

    async def observe(
        self, conn: Any, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        queries, now = reads.queries, reads.now
        assert version is None, "Redis counters cannot check the policy version"
        return await self._run(changes, queries, self.clock.bucket(now), now)

    async def read(self, conn: Any, reads: Reads) -> Totals:
        queries, now = reads.queries, reads.now
        return await self._run((), queries, self.clock.bucket(now), now) if queries else {}

    async def _run(
        self,
        changes: Sequence[CounterDeltas],
        queries: Sequence[WindowQuery],
        current: int,
        now: datetime | None = None,
    ) -> dict[WindowQuery, int]:
        args: list[Any] = [self.prefix, self.clock.size, self.ttl, self.hour, len(changes)]
        for change in changes:
            deltas = [(_FIELDS[c], d) for c, d in change.deltas.items() if d]
            args += [change.bucket, len(change.keys), *change.keys, len(deltas)]
            args += [item for pair in deltas for item in pair]
        args += [current, len(queries)]
        for q in queries:
            assert now is not None
            fields = [_FIELDS[c] for c in READS[q.measure]]
            args += [q.key, self.clock.oldest(now, q.window_seconds), len(fields), *fields]
        raw = await self._script(args=args)
        return {q: int(v) for q, v in zip(queries, raw, strict=True)}
