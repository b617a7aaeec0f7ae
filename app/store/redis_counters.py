"""Velocity and conversion counters in Redis: one hash per counter key and bucket.

Each call is one Lua script, so counting an attempt and reading its windows is atomic:
concurrent attempts on one key see distinct totals, on every worker and host. Attempts
still being decided count as allowed ("pending") until settled, so an allowed-only limit
cannot be overrun by a burst either. Needs a single Redis primary (keys are built in Lua).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from app.store.buckets import MICROS, BucketClock, WindowQuery

_FIELDS = {"attempts": "a", "spend": "s", "allowed": "al", "allowed_spend": "as", "successes": "su"}

_OBSERVE = """
local prefix, bucket, size, ttl, spend = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5])
local nkeys = tonumber(ARGV[6])
for i = 1, nkeys do
  local k = prefix .. ARGV[5 + 2 * i] .. ':' .. bucket
  redis.call('HINCRBY', k, 'a', 1)
  if spend > 0 then redis.call('HINCRBY', k, 's', spend) end
  if ARGV[6 + 2 * i] == '1' then
    redis.call('HINCRBY', k, 'p', 1)
    if spend > 0 then redis.call('HINCRBY', k, 'ps', spend) end
  end
  redis.call('EXPIRE', k, ttl)
end
local out = {}
local base = 7 + 2 * nkeys
local nq = tonumber(ARGV[base])
for q = 0, nq - 1 do
  local at = base + q * 3
  local key, since, field = ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3]
  local total = 0
  for b = since, bucket, size do
    local k = prefix .. key .. ':' .. b
    local v = redis.call('HMGET', k, field, 'p', 'ps')
    total = total + (tonumber(v[1]) or 0)
    if field == 'al' then total = total + (tonumber(v[2]) or 0) end
    if field == 'as' then total = total + (tonumber(v[3]) or 0) end
  end
  out[q + 1] = tostring(total)
end
return out
"""

_ADD = """
local prefix, bucket, ttl, nfields = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5 + nfields * 2, #ARGV do
  local k = prefix .. ARGV[i] .. ':' .. bucket
  for f = 0, nfields - 1 do
    local delta = tonumber(ARGV[6 + f * 2])
    if delta ~= 0 then redis.call('HINCRBY', k, ARGV[5 + f * 2], delta) end
  end
  if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ttl) end
end
return 1
"""


class RedisCounters:
    """Same semantics as SqlCounters; the `conn` argument is accepted and unused."""

    def __init__(
        self, redis: Redis, *, bucket_seconds: int, retention_seconds: int, prefix: str = "vg:c:"
    ) -> None:
        self.redis = redis
        self.clock = BucketClock(bucket_seconds)
        self.ttl = retention_seconds + 2 * bucket_seconds
        self.prefix = prefix
        self._observe = redis.register_script(_OBSERVE)
        self._script = redis.register_script(_ADD)

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
        args += [spend_micros, len(ordered)]
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
        args += [0, 0, len(queries)]
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
            args = [self.prefix, bucket, self.ttl, len(deltas), *fields, *ordered]
            await self._script(args=args)


def _value(query: WindowQuery, raw: int) -> float:
    return raw / MICROS if query.measure in ("spend", "allowed_spend") else float(raw)
