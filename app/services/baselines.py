"""The verified baselines of adaptive limits, kept in memory and refreshed in the background.

The request path adds no statement for them: `values` is a dictionary look-up per baseline.
The same refresh keeps, for a `verified` condition's `min_history`, each key's first attempt
in the condition's window (a key new since the last refresh is not judged yet), read
incrementally (services/first_seen.py).
`refresh` (at startup before serving, then every `VERIFYGUARD_BASELINE_REFRESH_SECONDS`)
keeps each baseline's verified count of every key (services/verified_counts.py) and hands
out those that lift a limit above its floor; a key left out has the floor as its limit,
exactly. The first refresh reads every baseline's spans whole; later ones read what the
inbox claims since the previous one changed (store/changes.py, one statement pair for all
baselines) and each `last(window)` baseline's old edge: their cost follows the traffic since
the last refresh, not the stored history (a full read every 30 s took 0.6 s five minutes
into a soak at 300/s, and ~3 s at nine). A policy change is picked up by the next refresh
(until then its new baselines are floors). While the database is away the last values stay
in use.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.rules.aggregates import BaselineSpec, HistorySpec
from app.rules.engine import CompiledPolicy
from app.rules.facts import Facts
from app.services.first_seen import FirstSeen
from app.services.periodic import every
from app.services.policy.cache import PolicyCache
from app.services.verified_counts import VerifiedCounts
from app.store import changes
from app.store.changes import Change, Mark

log = structlog.get_logger()


class BaselineCache:
    """Baseline id -> counter key -> verified attempts, for the keys above the threshold;
    and history id -> counter key -> its first attempt in the window (seconds since the
    epoch), for `min_history`."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._first: dict[str, dict[str, float]] = {}
        self._verified: dict[BaselineSpec, VerifiedCounts] = {}
        self._seen: dict[HistorySpec, FirstSeen] = {}
        self._mark: Mark | None = None
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
        """Bring every baseline of `policy` to `now`: the changes since the last refresh, or
        a full read (the first time, for a new baseline, or when one needs it)."""
        try:
            await self._refresh(conn, policy, now)
        except BaseException:
            self._mark = None  # half applied: read everything again next time
            raise

    async def _refresh(self, conn: AsyncConnection, policy: CompiledPolicy, now: datetime) -> None:
        verified = {s: self._counts_for(s, above) for s, above in policy.baselines.items()}
        seen = {h: self._seen.get(h) or FirstSeen(h) for h in policy.histories}
        keys = list(dict.fromkeys([(s.key, s.digits) for s in verified]))
        keys += [(h.key, h.digits) for h in seen if (h.key, h.digits) not in keys]
        found: list[Change] = []
        if not keys:
            mark = None
        elif self._mark is None:
            mark = await changes.start(conn, now)
        else:
            found, mark = await changes.changes(conn, self._mark, keys, now)
        for spec, counts in verified.items():
            if self._mark is None or counts.needs_full(now):
                await counts.read_full(conn, now)
            else:
                await counts.advance(conn, now, found, keys.index((spec.key, spec.digits)))
        for history, tracked in seen.items():
            if self._mark is None or tracked.needs_full(now):
                await tracked.read_full(conn, now)
            else:
                tracked.advance(now, found, keys.index((history.key, history.digits)))
        self._mark, self._verified, self._seen = mark, verified, seen
        self._counts = {s.id: verified[s].above(above) for s, above in policy.baselines.items()}
        self._first = {h.id: tracked.firsts(now) for h, tracked in seen.items()}
        self.refreshed_at = now
        log.debug(
            "baselines.refreshed",
            keys={k: len(v) for k, v in (self._counts | self._first).items()},
            changes=len(found),
        )

    def _counts_for(self, spec: BaselineSpec, above: float) -> VerifiedCounts:
        """The kept counts of `spec`; new ones (read in full) when its limits' threshold
        moved across one, which decides whether keys counting one are kept as hashes."""
        compact = above >= 1
        kept = self._verified.get(spec)
        if kept is not None and kept.compact == compact:
            return kept
        return VerifiedCounts(spec, compact=compact)

    def snapshot(self) -> Mapping[str, Mapping[str, float]]:
        return {**self._counts, **self._first}


async def refresh_live(
    engine: AsyncEngine, policies: PolicyCache, cache: BaselineCache, now: datetime
) -> None:
    """Refresh `cache` for the live policy."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot: the changes, the edges and any full read agree (SQLite: the
            # app's one connection already sees no write in between).
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
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
