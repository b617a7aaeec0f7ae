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

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.aggregates import HistorySpec
from app.store.baselines import attempt_spans
from app.store.changes import Change

MICROSECOND = timedelta(microseconds=1)


@dataclass(slots=True)
class FirstSeen:
    """Key -> [first, last] attempt (seconds since the epoch) for one history spec."""

    spec: HistorySpec
    spans: dict[str, list[float]] = field(default_factory=dict)
    ahead: list[tuple[datetime, str]] = field(default_factory=list)
    read_until: datetime | None = None

    def needs_full(self, now: datetime) -> bool:
        previous = self.read_until
        return previous is None or now < previous or now - previous >= self._window()

    async def read_full(self, conn: AsyncConnection, now: datetime) -> None:
        key, digits = self.spec.key, self.spec.digits
        found = await attempt_spans(conn, key, digits, now - self._window(), now)
        self.spans = {
            k: [first.timestamp(), last.timestamp()] for k, (first, last) in found.items()
        }
        later = await attempt_spans(conn, key, digits, now + MICROSECOND, now + self._window())
        self.ahead = [(moment, k) for k, pair in later.items() for moment in pair]
        self.read_until = now

    def advance(self, now: datetime, found: list[Change], slot: int) -> None:
        """Add the attempts stored since the last refresh (`found`, this spec's key in
        column `slot`) and forget the keys whose last attempt left the window."""
        waiting, self.ahead = self.ahead, []
        since = now - self._window()
        entries: list[tuple[datetime, str | None]] = [*waiting]
        entries += [(c.requested_at, c.keys[slot]) for c in found if c.attempt]
        for at, key in entries:
            if key is None or at < since:
                continue
            if at > now:
                self.ahead.append((at, key))
                continue
            moment, known = at.timestamp(), self.spans.get(key)
            if known is None:
                self.spans[key] = [moment, moment]
            else:
                known[0], known[1] = min(known[0], moment), max(known[1], moment)
        cutoff = since.timestamp()
        self.spans = {key: span for key, span in self.spans.items() if span[1] >= cutoff}
        self.read_until = now

    def firsts(self, now: datetime) -> dict[str, float]:
        """Key -> its first attempt in the window as of `now` (the window's start at most)."""
        start = (now - self._window()).timestamp()
        return {key: max(first, start) for key, (first, _) in self.spans.items()}

    def _window(self) -> timedelta:
        return timedelta(seconds=self.spec.window_seconds)
