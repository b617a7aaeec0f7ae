"""Velocity and conversion counters in Redis: one hash per counter key and bucket.

Each call is one Lua script, so counting an attempt and reading its windows is atomic:
concurrent attempts on one key see distinct totals, on every worker and host. Attempts
still being decided count as allowed ("pending") until settled, so an allowed-only limit
cannot be overrun by a burst either. Needs a single Redis primary (keys are built in Lua).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from app.store.buckets import MICROS, BucketClock, WindowQuery

_FIELDS = {"attempts": "a", "spend": "s", "allowed": "al", "allowed_spend": "as", "successes": "su"}

# Each minute's counts also go to their hour's hash (":h<hour start>"). A window is read
# minute by minute up to its first whole hour, hour by hour while whole hours fit, then
# minute by minute again: at most 2 x 59 + 24 reads for a day, where reading every minute
# took 1,440 (the starter policy's 24 h conversion window made Redis the bottleneck at ~200
# attempts/s). Hours are trusted from the first whole hour after the marker: 0 where the
# prefix held no counts when it was set (all hours), else the minute it was set, as minutes
# counted before (by a version without hour hashes) have none, and are read as minutes.
_COMMON = """
local function targets(prefix, key, bucket, ttl, hour)
  local out = {{prefix .. key .. ':' .. bucket, ttl}}
  if hour > 0 then out[2] = {prefix .. key .. ':h' .. (bucket - bucket % hour), ttl + hour} end
  return out
end
local function read(k, field)
  local v = redis.call('HMGET', k, field, 'p', 'ps')
  local total = tonumber(v[1]) or 0
  if field == 'al' then total = total + (tonumber(v[2]) or 0) end
  if field == 'as' then total = total + (tonumber(v[3]) or 0) end
  return total
end
local function window(prefix, key, since, bucket, size, hour, trusted, field)
  local total, b = 0, since
  while b <= bucket do
    if hour > 0 and trusted and b % hour == 0 and b >= trusted and b + hour <= bucket + size then
      total = total + read(prefix .. key .. ':h' .. b, field)
      b = b + hour
    else
      total = total + read(prefix .. key .. ':' .. b, field)
      b = b + size
    end
  end
  return total
end
"""

_OBSERVE = (
    _COMMON
    + """
local prefix, bucket, size, ttl, spend, hour = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local nkeys = tonumber(ARGV[7])
local marker = prefix .. 'hours-from'
if hour > 0 and nkeys > 0 then redis.call('SET', marker, bucket, 'NX') end
for i = 1, nkeys do
  local key, held = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  for _, target in ipairs(targets(prefix, key, bucket, ttl, hour)) do
    local k = target[1]
    redis.call('HINCRBY', k, 'a', 1)
    if spend > 0 then redis.call('HINCRBY', k, 's', spend) end
    if held == '1' then
      redis.call('HINCRBY', k, 'p', 1)
      if spend > 0 then redis.call('HINCRBY', k, 'ps', spend) end
    end
    redis.call('EXPIRE', k, target[2])
  end
end
local trusted = nil
if hour > 0 then
  local from = tonumber(redis.call('GET', marker))
  if from then trusted = from - from % hour + hour end
end
local out = {}
local base = 8 + 2 * nkeys
local nq = tonumber(ARGV[base])
for q = 0, nq - 1 do
  local at = base + q * 3
  local key, since, field = ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3]
  out[q + 1] = tostring(window(prefix, key, since, bucket, size, hour, trusted, field))
end
return out
"""
)

_ADD = (
    _COMMON
    + """
local prefix, bucket, ttl, hour = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local nfields = tonumber(ARGV[5])
for i = 6 + nfields * 2, #ARGV do
  for _, target in ipairs(targets(prefix, ARGV[i], bucket, ttl, hour)) do
    local k = target[1]
    for f = 0, nfields - 1 do
      local delta = tonumber(ARGV[7 + f * 2])
      if delta ~= 0 then redis.call('HINCRBY', k, ARGV[6 + f * 2], delta) end
    end
    if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, target[2]) end
  end
end
return 1
"""
)

HOUR = 3600


class RedisCounters:
    """Same semantics as SqlCounters; the `conn` argument is accepted and unused."""

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
        self._observe = redis.register_script(_OBSERVE)
        self._script = redis.register_script(_ADD)

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

    async def observe(
        self,
        conn: Any,
        *,
        keys: Iterable[str],
        queries: Sequence[WindowQuery],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> dict[WindowQuery, float]:
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        args: list[Any] = [self.prefix, self.clock.bucket(now), self.clock.size, self.ttl]
        hold = set(held)
        args += [spend_micros, self.hour, len(ordered)]
        for key in ordered:
            args += [key, "1" if key in hold else "0"]
        args.append(len(queries))
        for q in queries:
            args += [q.key, self.clock.oldest(now, q.window_seconds), _FIELDS[q.measure]]
        raw = await self._observe(args=args)
        return {q: _value(q, int(v)) for q, v in zip(queries, raw, strict=True)}

    async def peek(
        self, conn: Any, *, queries: Sequence[WindowQuery], now: datetime, spend_micros: int
    ) -> dict[WindowQuery, float]:
        """Read every window without counting, as `SqlCounters.peek` (observe with no keys)."""
        if not queries:
            return {}
        args: list[Any] = [self.prefix, self.clock.bucket(now), self.clock.size, self.ttl]
        args += [0, self.hour, 0, len(queries)]
        for q in queries:
            args += [q.key, self.clock.oldest(now, q.window_seconds), _FIELDS[q.measure]]
        raw = await self._observe(args=args)
        own = {"attempts": 1, "spend": spend_micros}
        return {
            q: _value(q, int(v) + own.get(q.measure, 0)) for q, v in zip(queries, raw, strict=True)
        }

    async def forget(
        self,
        conn: Any,
        *,
        keys: Iterable[str],
        now: datetime,
        spend_micros: int,
        held: Collection[str] = (),
    ) -> None:
        """Undo `observe` (the attempt turned out to be a redelivery)."""
        bucket = self.clock.bucket(now)
        await self._add(keys, bucket, {"a": -1, "s": -spend_micros})
        await self._add(held, bucket, {"p": -1, "ps": -spend_micros})

    async def settle(
        self, conn: Any, *, keys: Iterable[str], now: datetime, spend_micros: int, allowed: bool
    ) -> None:
        """The attempt is decided: under the keys it was held pending under, it stops being
        pending, and counts as allowed if it was."""
        won = 1 if allowed else 0
        deltas = {"p": -1, "ps": -spend_micros, "al": won, "as": spend_micros * won}
        await self._add(keys, self.clock.bucket(now), deltas)

    async def record_success(
        self, conn: Any, *, keys: Iterable[str], requested_at: datetime
    ) -> None:
        await self._add(keys, self.clock.bucket(requested_at), {"su": 1})

    async def _add(self, keys: Iterable[str], bucket: int, deltas: dict[str, int]) -> None:
        ordered = sorted(set(keys))
        if ordered:
            fields = [item for pair in deltas.items() for item in pair]
            args = [self.prefix, bucket, self.ttl, self.hour, len(deltas), *fields, *ordered]
            await self._script(args=args)


def _value(query: WindowQuery, raw: int) -> float:
    return raw / MICROS if query.measure in ("spend", "allowed_spend") else float(raw)
