"""The verified baselines of adaptive limits, kept in memory and refreshed in the background.

The request path adds no statement for them: `values` is a dictionary look-up per baseline.
The same refresh keeps, for a `verified` condition's `min_history`, each key's first attempt
in the condition's window (a key new since the last refresh is not judged yet), read
incrementally (services/first_seen.py).
`refresh` (at startup before serving, then every `VERIFYGUARD_BASELINE_REFRESH_SECONDS`)
reads, with one statement per baseline of the live policy, every key whose verified count
can lift a limit above its floor; a key left out has the floor as its limit, exactly. A
policy change is picked up by the next refresh (until then its new baselines are floors).
While the database is away the last values stay in use.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.aggregates import BaselineSpec
from app.rules.engine import CompiledPolicy
from app.rules.facts import Facts
from app.services.first_seen import FirstSeen
from app.services.periodic import every
from app.services.policy.cache import PolicyCache
from app.store.baselines import BaselineQuery, last, same_hour, verified_counts

log = structlog.get_logger()


class BaselineCache:
    """Baseline id -> counter key -> verified attempts, for the keys above the threshold;
    and history id -> counter key -> its first attempt in the window (seconds since the
    epoch), for `min_history`."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._first: dict[str, dict[str, float]] = {}
        self._seen: dict[str, FirstSeen] = {}
        self.refreshed_at: datetime | None = None

    def values(self, policy: CompiledPolicy, facts: Facts) -> dict[str, float]:
        """The baselines this attempt's adaptive limits read, by id (keys known only)."""
        out: dict[str, float] = {}
        for spec in policy.baselines:
            counts = self._counts.get(spec.id)
            if not counts:
                continue
            key = spec.key_value(facts)
            verified = counts.get(key) if key is not None else None
            if verified is not None:
                out[spec.id] = float(verified)
        for history in policy.histories:
            firsts = self._first.get(history.id)
            key = history.key_value(facts) if firsts else None
            first = firsts.get(key) if firsts and key is not None else None
            if first is not None:
                out[history.id] = first
        return out

    async def refresh(self, conn: AsyncConnection, policy: CompiledPolicy, now: datetime) -> None:
        """Reload every baseline of `policy` as of `now`, one statement each."""
        counts: dict[str, dict[str, int]] = {}
        for spec, above in policy.baselines.items():
            counts[spec.id] = await verified_counts(conn, query(spec, above, now))
        seen = {
            history.id: self._seen.get(history.id) or FirstSeen(history)
            for history in policy.histories
        }
        for tracked in seen.values():
            await tracked.refresh(conn, now)
        self._counts = counts
        self._seen = seen
        self._first = {ident: tracked.firsts(now) for ident, tracked in seen.items()}
        self.refreshed_at = now
        log.debug(
            "baselines.refreshed", keys={k: len(v) for k, v in (counts | self._first).items()}
        )

    def snapshot(self) -> Mapping[str, Mapping[str, float]]:
        return {**self._counts, **self._first}


def query(spec: BaselineSpec, above: float, now: datetime) -> BaselineQuery:
    """The stored verifications a baseline counts as of `now`."""
    if spec.same_hour_days is not None:
        spans = same_hour(spec.same_hour_days, now)
    else:
        spans = last(timedelta(seconds=spec.window_seconds or 0), now)
    return BaselineQuery(spec.key, spec.digits, spans, above)


async def refresh_live(
    engine: AsyncEngine, policies: PolicyCache, cache: BaselineCache, now: datetime
) -> None:
    """Refresh `cache` for the live policy."""
    async with engine.connect() as conn:
        policy = await policies.current(conn)
        await cache.refresh(conn, policy, now)


def run_periodically(
    engine: AsyncEngine,
    policies: PolicyCache,
    cache: BaselineCache,
    *,
    interval: float,
    now: Callable[[], datetime],
    paused: Callable[[], bool],
) -> Coroutine[Any, Any, None]:
    """The background refresh, every `interval` seconds while the database is up."""

    async def job() -> None:
        await refresh_live(engine, policies, cache, now())

    return every(interval, job, paused=paused, failed="baselines.refresh_failed")
