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

from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.gc_settings import young_collections_paused
from app.rules.aggregates import BaselineSpec, HistorySpec
from app.rules.engine import CompiledPolicy
from app.rules.facts import Facts
from app.services.first_seen import FirstSeen
from app.services.periodic import every
from app.services.policy.cache import PolicyCache
from app.services.verified_counts import VerifiedCounts
from app.store import changes
from app.store.changes import Change, Mark
from app.store.turns import turn

log = structlog.get_logger()


@dataclass(slots=True)
class Read:
    """What a refresh read in its snapshot: the baselines and histories it keeps, the
    changes since the last refresh, and for each baseline and history brought forward
    (not read in full) its old edge (`gone`) or its name (`advanced`)."""

    verified: dict[BaselineSpec, VerifiedCounts]
    seen: dict[HistorySpec, FirstSeen]
    keys: list[tuple[str, int | None]]
    found: list[Change] = field(default_factory=list)
    mark: Mark | None = None
    gone: dict[BaselineSpec, dict[str, int]] = field(default_factory=dict)
    advanced: list[HistorySpec] = field(default_factory=list)


class BaselineCache:
    """Baseline id -> counter key -> verified attempts, for the keys above the threshold;
    and history id -> counter key -> its first attempt in the window (seconds since the
    epoch), for `min_history`."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        # History id -> (its FirstSeen's `first`, updated in place, and the window's start
        # as of the last refresh: an earlier first attempt reads as the start).
        self._first: dict[str, tuple[dict[str, float], float]] = {}
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
            firsts, start = self._first.get(history.id) or ({}, 0.0)
            key = history.key_value(facts) if firsts else None
            first = firsts.get(key) if key is not None else None
            if first is not None:
                out[history.id] = max(first, start)
        return out

    async def refresh(self, conn: AsyncConnection, policy: CompiledPolicy, now: datetime) -> None:
        """Bring every baseline of `policy` to `now`: the changes since the last refresh, or
        a full read (the first time, for a new baseline, or when one needs it)."""
        await self.apply(policy, await self.read(conn, policy, now), now)

    async def read(self, conn: AsyncConnection, policy: CompiledPolicy, now: datetime) -> Read:
        """What a refresh to `now` reads, in one snapshot (`conn`'s); `apply` then needs no
        connection, so the snapshot is not held while the changes are applied."""
        with self._or_read_all():
            return await self._read(conn, policy, now)

    async def apply(self, policy: CompiledPolicy, read: Read, now: datetime) -> None:
        """Apply what `read` read, a slice at a time: the request path keeps its turns."""
        with self._or_read_all():
            await self._apply(policy, read, now)

    @contextmanager
    def _or_read_all(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._mark = None  # half applied: read everything again next time
            raise

    async def _read(self, conn: AsyncConnection, policy: CompiledPolicy, now: datetime) -> Read:
        verified = {s: self._counts_for(s, above) for s, above in policy.baselines.items()}
        seen = {h: self._seen.get(h) or FirstSeen(h) for h in policy.histories}
        keys = list(dict.fromkeys([(s.key, s.digits) for s in verified]))
        keys += [(h.key, h.digits) for h in seen if (h.key, h.digits) not in keys]
        read = Read(verified, seen, keys)
        if not keys:
            read.mark = None
        elif self._mark is None:
            read.mark = await changes.start(conn, now)
        else:
            read.found, read.mark = await changes.changes(conn, self._mark, keys, now)
        for spec, counts in verified.items():
            if self._mark is None or counts.needs_full(now):
                await counts.read_full(conn, now)
            else:
                read.gone[spec] = await counts.read_edge(conn, now)
        for history, tracked in seen.items():
            if self._mark is None or tracked.needs_full(now):
                await tracked.read_full(conn, now)
            else:
                read.advanced.append(history)
        return read

    async def _apply(self, policy: CompiledPolicy, read: Read, now: datetime) -> None:
        slot = read.keys.index
        for spec, gone in read.gone.items():
            await read.verified[spec].advance(now, read.found, slot((spec.key, spec.digits)), gone)
        for history in read.advanced:
            tracked = read.seen[history]
            await tracked.advance(now, read.found, slot((history.key, history.digits)))
        self._mark, self._verified, self._seen = read.mark, read.verified, read.seen
        self._counts = {
            s.id: read.verified[s].above(above) for s, above in policy.baselines.items()
        }
        self._first = {h.id: (t.first, t.start(now)) for h, t in read.seen.items()}
        self.refreshed_at = now
        log.debug(
            "baselines.refreshed",
            keys={k: len(v) for k, v in self._counts.items()}
            | {k: len(firsts) for k, (firsts, _) in self._first.items()},
            changes=len(read.found),
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
        firsts = {
            hid: {key: max(first, start) for key, first in kept.items()}
            for hid, (kept, start) in self._first.items()
        }
        return {**self._counts, **firsts}


async def refresh_live(
    engine: AsyncEngine, policies: PolicyCache, cache: BaselineCache, now: datetime
) -> None:
    """Refresh `cache` for the live policy, read through `engine` (the runtime's reader:
    on SQLite not the request path's connection); no collection of the garbage collector
    while it runs (app/gc_settings.py: its changes and rows are freed as it drops them)."""
    with young_collections_paused():
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One snapshot: the changes, the edges and any full read agree (SQLite: the
                # reader's transaction is one, store/base.py `create_reader`).
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            policy = await policies.current(conn)
            read = await cache.read(conn, policy, now)
        # Applied once the snapshot is released: it was held while the changes were
        # applied, their slices yielding to the request path (the soak's longest
        # transactions, 0.1-0.55 s). A burst that began meanwhile is waited out first,
        # inside `every` (store/turns.py).
        await turn()
        await cache.apply(policy, read, now)
        del read  # its changes freed before collections resume


def run_periodically(
    engine: AsyncEngine,
    policies: PolicyCache,
    cache: BaselineCache,
    *,
    interval: float,
    now: Callable[[], datetime],
    paused: Callable[[], bool],
    busy: Callable[[], bool] | None = None,
) -> Coroutine[Any, Any, None]:
    """The background refresh, every `interval` seconds while the database is up; with
    `busy`, waiting out a burst of request events (services/periodic.py `every`)."""

    async def job() -> None:
        await refresh_live(engine, policies, cache, now())

    return every(interval, job, paused=paused, failed="baselines.refresh_failed", busy=busy)
