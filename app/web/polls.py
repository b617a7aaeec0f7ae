"""Which console polls are logged: the first of a session and filter set, then one every
`every` (a feed polled every 2 s would otherwise write 1,800 audit-log rows an hour).

Kept in the process's memory: with several workers each logs its own first poll, which is
still a handful of rows where there were thousands. The map is bounded; when full, the
entries older than `every` go (an entry forgotten early only logs one more poll).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

DEFAULT_EVERY = timedelta(minutes=5)
DEFAULT_LIMIT = 10_000


class PollLog:
    def __init__(self, *, every: timedelta = DEFAULT_EVERY, limit: int = DEFAULT_LIMIT) -> None:
        self.every = every
        self._limit = limit
        self._logged: dict[tuple[str, str, str], datetime] = {}

    def due(self, *, session: str, path: str, query: Mapping[str, str], at: datetime) -> bool:
        """Whether this poll is logged; if it is, the next one of its key is due `every` later."""
        key = (session, path, "&".join(f"{k}={v}" for k, v in sorted(query.items())))
        last = self._logged.get(key)
        if last is not None and at - last < self.every:
            return False
        if len(self._logged) >= self._limit:
            self._forget_before(at - self.every)
        self._logged[key] = at
        return True

    def _forget_before(self, edge: datetime) -> None:
        kept = {key: at for key, at in self._logged.items() if at >= edge}
        if len(kept) >= self._limit:  # all recent: keep the newer half
            kept = dict(sorted(kept.items(), key=lambda item: item[1])[len(kept) // 2 :])
        self._logged = kept
