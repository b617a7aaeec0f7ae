"""The live policy's version kept beside the counters in Redis (`<prefix>policy-version`).

The counting script checks it (store/redis_counters.py), so a request event counted in
Redis under the policy compiled last needs no read of the version from PostgreSQL. The
database stays the truth; services/policy/published.py says when the key is written.
"""

from __future__ import annotations

from redis.asyncio import Redis

SUFFIX = "policy-version"

# Raised only: a write of a version older than the one kept (a reader slower than a
# change's own write) leaves the newer one.
_RAISE = """
local kept = tonumber(redis.call('GET', KEYS[1]))
local version = tonumber(ARGV[1])
if not kept or kept < version then
  redis.call('SET', KEYS[1], ARGV[1])
  return version
end
return kept
"""


class PolicyVersionKey:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self.redis = redis
        self.name = f"{prefix}{SUFFIX}"
        self._raise = redis.register_script(_RAISE)

    async def get(self) -> int | None:
        """The version kept, if any."""
        kept = await self.redis.get(self.name)
        return None if kept is None else int(kept)

    async def raise_to(self, version: int) -> int:
        """Keep `version` unless a newer one is kept already; the version kept after."""
        return int(await self._raise(keys=[self.name], args=[version]))

    async def lower_to(self, version: int) -> None:
        """Keep `version` though a newer one is kept: only while holding the policy's lock
        (no change can commit meanwhile), after the database went back (a restore)."""
        await self.redis.set(self.name, version)
