"""Each key's first attempt in a `min_history` window, kept up to date without scanning the
window at every refresh.

The first refresh (and one after a policy change, a gap of a whole window, or a clock that
went back) reads every key's first and last attempt in the window: a scan of the whole
window (~1 s for 1M attempts on PostgreSQL). Later refreshes only take the attempts stored
since the previous one, from the inbox claims read once per refresh for every baseline
(store/changes.py; before, the last 5 minutes of attempts were re-read at every refresh,
~300 ms in a soak at 300/s): a new key starts there, a known key moves its last attempt on,
and a key whose last attempt has left the window is forgotten (new again). A key seen
without a gap of a whole window keeps its earliest attempt, reported as the window's start
once older than it: the same verdict as the window's true first attempt (at least
`min_history` old whenever the key has an attempt older than that in the window). An attempt
requested after the refresh's `now` waits until `now` passes it, as a scan would leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from math import inf

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.aggregates import HistorySpec
from app.services.periodic import sliced
from app.store.baselines import attempt_spans
from app.store.changes import Change

MICROSECOND = timedelta(microseconds=1)


@dataclass(slots=True)
class FirstSeen:
    """Key -> first and last attempt (seconds since the epoch) for one history spec: two
    dictionaries of floats, which the garbage collector does not track (a [first, last]
    list per key was one more object for every full collection to visit). `first` is what
    the request path reads (BaselineCache), updated in place by `advance`."""

    spec: HistorySpec
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    ahead: list[tuple[datetime, str]] = field(default_factory=list)
    read_until: datetime | None = None
    oldest: float = inf
    """No key's last attempt is older: while the window starts before it, none has left."""

    def needs_full(self, now: datetime) -> bool:
        previous = self.read_until
        return previous is None or now < previous or now - previous >= self._window()

    async def read_full(self, conn: AsyncConnection, now: datetime) -> None:
        key, digits = self.spec.key, self.spec.digits
        found = await attempt_spans(conn, key, digits, now - self._window(), now)
        self.first = {k: first.timestamp() for k, (first, _) in found.items()}
        self.last = {k: last.timestamp() for k, (_, last) in found.items()}
        self.oldest = min(self.last.values(), default=inf)
        later = await attempt_spans(conn, key, digits, now + MICROSECOND, now + self._window())
        self.ahead = [(moment, k) for k, pair in later.items() for moment in pair]
        self.read_until = now

    async def advance(self, now: datetime, found: list[Change], slot: int) -> None:
        """Add the attempts stored since the last refresh (`found`, this spec's key in
        column `slot`) and forget the keys whose last attempt left the window; a slice of
        them at a time (services/periodic.py)."""
        waiting, self.ahead = self.ahead, []
        since = now - self._window()
        for at, key in waiting:
            self._add(at, key, now, since)
        async for part in sliced(found):
            for change in part:
                if change.attempt:
                    self._add(change.requested_at, change.keys[slot], now, since)
        await self._forget(since.timestamp())
        self.read_until = now

    def start(self, now: datetime) -> float:
        """The window's start as of `now`: an earlier first attempt is reported as this."""
        return (now - self._window()).timestamp()

    def _add(self, at: datetime, key: str | None, now: datetime, since: datetime) -> None:
        if key is None or at < since:
            return
        if at > now:
            self.ahead.append((at, key))
            return
        moment = at.timestamp()
        if moment < self.first.get(key, inf):
            self.first[key] = moment
        if moment > self.last.get(key, -inf):
            self.last[key] = moment
        self.oldest = min(self.oldest, moment)

    async def _forget(self, cutoff: float) -> None:
        if cutoff <= self.oldest:
            return
        oldest = inf
        async for part in sliced(list(self.last)):
            for key in part:
                last = self.last[key]
                if last < cutoff:
                    del self.last[key], self.first[key]
                else:
                    oldest = min(oldest, last)
        self.oldest = oldest

    def _window(self) -> timedelta:
        return timedelta(seconds=self.spec.window_seconds)
