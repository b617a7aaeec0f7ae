"""Each key's first attempt in a `min_history` window, kept up to date without scanning the
window at every refresh.

The first refresh (and one after a policy change, a gap longer than the window, or a clock
that went back) reads every key's first and last attempt in the window: a scan of the whole
window (~1 s for 1M attempts on PostgreSQL). Later refreshes read only the attempts since
the previous one (with an overlap for rows stored late, e.g. by group commit): a new key
starts there, a known key moves its last attempt on, and a key whose last attempt has left
the window is forgotten (new again). A key seen without a gap of a whole window keeps its
earliest attempt, reported as the window's start once older than it: the same verdict as
the window's true first attempt (at least `min_history` old whenever the key has an attempt
older than that in the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.aggregates import HistorySpec
from app.store.baselines import attempt_spans

# Rows committed after the previous refresh with an earlier request time are read again.
OVERLAP = timedelta(minutes=5)


@dataclass(slots=True)
class FirstSeen:
    """Key -> [first, last] attempt (seconds since the epoch) for one history spec."""

    spec: HistorySpec
    spans: dict[str, list[float]] = field(default_factory=dict)
    read_until: datetime | None = None

    async def refresh(self, conn: AsyncConnection, now: datetime) -> None:
        window = timedelta(seconds=self.spec.window_seconds)
        since = now - window
        previous = self.read_until
        full = previous is None or now < previous or now - previous >= window - OVERLAP
        start = since if full or previous is None else previous - OVERLAP
        found = await attempt_spans(conn, self.spec.key, self.spec.digits, start, now)
        spans = {} if full else self.spans
        for key, (first, last) in found.items():
            known = spans.get(key)
            if known is None:
                spans[key] = [first.timestamp(), last.timestamp()]
            else:
                known[0] = min(known[0], first.timestamp())
                known[1] = max(known[1], last.timestamp())
        cutoff = since.timestamp()
        self.spans = {key: span for key, span in spans.items() if span[1] >= cutoff}
        self.read_until = now

    def firsts(self, now: datetime) -> dict[str, float]:
        """Key -> its first attempt in the window as of `now` (the window's start at most)."""
        start = (now - timedelta(seconds=self.spec.window_seconds)).timestamp()
        return {key: max(first, start) for key, (first, _) in self.spans.items()}
