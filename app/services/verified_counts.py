"""One baseline's verified attempts per key, kept up to date without re-reading its spans.

The first refresh (and one after a policy change, a clock that went back, a gap longer than
the window, a same-hour baseline's next hour, or `RESYNC` since the last full read) reads
the spans whole. Later ones only add the successes completed since (store/changes.py, read
once per refresh for every baseline, in the same snapshot) whose request falls in the
spans, and for `last(window)` take off the successes that left the window: one statement
over the requests of [previous start, new start), 14 days ago, which only a very late
result changes (and it is counted in both reads). A success requested after `now` (another
worker's clock, a request stored while this refresh started) waits in `ahead` until `now`
passes it, as a full read would leave it out. All counts are exact: those of the full read
at the same `now` (tests/services/test_verified_counts.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.aggregates import BaselineSpec
from app.services.key_tally import KeyTally
from app.services.periodic import sliced
from app.store.baselines import (
    BaselineQuery,
    last,
    same_hour,
    verified_after,
    verified_counts,
)
from app.store.changes import Change

RESYNC = timedelta(hours=6)  # a full read, for what store/changes.py cannot see


@dataclass(slots=True)
class VerifiedCounts:
    """Key -> successes in the spans as of `read_until`, every key (not only those above
    the threshold: a key below it can rise). `compact` (every limit's threshold is one or
    more): kept in a `KeyTally`, a key counting one as an 8-byte hash (services/key_tally.py);
    otherwise in a dictionary."""

    spec: BaselineSpec
    compact: bool = True
    totals: dict[str, int] | KeyTally = field(default_factory=dict)
    ahead: list[tuple[datetime, str]] = field(default_factory=list)
    read_until: datetime | None = None
    full_at: datetime | None = None

    def needs_full(self, now: datetime) -> bool:
        previous = self.read_until
        if previous is None or self.full_at is None or now < previous:
            return True
        if now - self.full_at >= RESYNC:
            return True
        if self.spec.same_hour_days is not None:
            return _hour(now) != _hour(previous)
        return now - previous >= self._window()

    async def read_full(self, conn: AsyncConnection, now: datetime) -> None:
        query = BaselineQuery(*self._key(), spans(self.spec, now), 0)
        counts = await verified_counts(conn, query)
        self.totals = KeyTally(counts) if self.compact else counts
        self.ahead = []
        if self.spec.same_hour_days is None:  # a same-hour baseline's spans are days ago
            self.ahead = await verified_after(conn, *self._key(), now)
        self.read_until = self.full_at = now

    async def read_edge(self, conn: AsyncConnection, now: datetime) -> dict[str, int]:
        """A `last(window)` baseline's successes that left the window since the last
        refresh (in the refresh's snapshot; `advance` takes them off)."""
        assert self.read_until is not None
        if self.spec.same_hour_days is not None:
            return {}
        left = [(self.read_until - self._window(), now - self._window())]
        return await verified_counts(conn, BaselineQuery(*self._key(), left, 0))

    async def advance(
        self, now: datetime, found: list[Change], slot: int, gone: dict[str, int]
    ) -> None:
        """Apply the successes completed since the last refresh (`found`, this baseline's
        key in column `slot`) and those that left (`gone`, from `read_edge`), and move the
        spans on to `now`; a slice of them at a time (services/periodic.py)."""
        assert self.read_until is not None
        deltas: dict[str, int] = {}
        counted = spans(self.spec, now)
        if self.spec.same_hour_days is None:
            # [previous start, now]: what entered [previous start, start) left again in `gone`.
            counted = [(self.read_until - self._window(), counted[0][1])]
            for name, n in gone.items():
                _add(deltas, name, -n)
        waiting, self.ahead = self.ahead, []
        for at, key in waiting:
            self._count(deltas, counted, now, at, key)
        async for part in sliced(found):
            for change in part:
                if change.verified:
                    self._count(deltas, counted, now, change.requested_at, change.keys[slot])
        async for some in sliced(list(deltas.items())):
            if isinstance(self.totals, KeyTally):
                self.totals.apply(dict(some))
            else:
                for key, n in some:
                    _add(self.totals, key, n)
        self.read_until = now

    def _count(
        self,
        deltas: dict[str, int],
        counted: list[tuple[datetime, datetime]],
        now: datetime,
        at: datetime,
        key: str | None,
    ) -> None:
        if key is None:
            return
        if at > now and self.spec.same_hour_days is None:
            self.ahead.append((at, key))
        elif _within(counted, at):
            _add(deltas, key, 1)

    def count(self, key: str) -> int:
        if isinstance(self.totals, KeyTally):
            return self.totals.count(key)
        return self.totals.get(key, 0)

    def above(self, threshold: float) -> dict[str, int]:
        if isinstance(self.totals, KeyTally):
            return self.totals.above(threshold)
        return {key: n for key, n in self.totals.items() if n > threshold}

    def _window(self) -> timedelta:
        return timedelta(seconds=self.spec.window_seconds or 0)

    def _key(self) -> tuple[str, int | None]:
        return self.spec.key, self.spec.digits


def spans(spec: BaselineSpec, now: datetime) -> list[tuple[datetime, datetime]]:
    """The request times a baseline counts as of `now`."""
    if spec.same_hour_days is not None:
        return same_hour(spec.same_hour_days, now)
    return last(timedelta(seconds=spec.window_seconds or 0), now)


def _within(spans: list[tuple[datetime, datetime]], at: datetime) -> bool:
    for start, end in spans:  # noqa: SIM110 - not any() over a generator: half the CPU
        if start <= at < end:
            return True
    return False


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _add(totals: dict[str, int], key: str, n: int) -> None:
    value = totals.get(key, 0) + n
    if value:
        totals[key] = value
    else:
        totals.pop(key, None)
