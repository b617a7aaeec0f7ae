"""How late the event loop runs what falls due: the wait a request spends unread in its
socket before the loop reads it (which the deadline, running from receipt, cannot see), and
whether the loop has a standing queue (for admission: services/admission.py).

A callback is scheduled every `period`; how late it runs is the length of the loop's turns
lately: a request that arrived meanwhile waited about that long to be read. `floor` is the
least of the last `TURNS` probes' lateness (CoDel's test for a standing queue, over turns of
the loop rather than a fixed interval: one long turn — a collection, a burst, the process
descheduled on a shared machine — does not raise it; a loop late turn after turn does).
The probe runs only while asked (`watch`, once per request event): an idle process has no
timer, and the first request after a pause starts it anew.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

PERIOD = 0.010  # seconds between probes: ~100 callbacks a second while busy, µs each
TURNS = 5  # probes `floor` looks back over: at least 50 ms, more while the loop is late
IDLE_AFTER = 2.0  # seconds without a `watch` after which the probe stops


class LoopLag:
    """The event loop's lateness, measured while request events arrive."""

    def __init__(
        self,
        *,
        period: float = PERIOD,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.period = period
        self.late = 0.0  # how late the last probe ran
        self.floor = 0.0  # the least lateness of the last TURNS probes
        self.at = float("-inf")  # when the last probe ran
        self.samples = 0  # probes so far
        self._clock = clock
        self._recent: deque[tuple[float, float]] = deque(maxlen=TURNS)  # (when, how late)
        self._asked = float("-inf")
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def watch(self) -> None:
        """Keep the probe running (started on the running loop if it is not)."""
        self._asked = self._clock()
        if self._handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a plain function's test): nothing to probe
                return
            self._recent.clear()
            self.late = self.floor = 0.0
            self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = self._clock() + self.period
        self._handle = loop.call_later(self.period, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = self._clock()
        self.record(now, max(0.0, now - self._due))
        if now - self._asked > IDLE_AFTER or loop.is_closed():
            self._handle = None
            self.late = self.floor = 0.0
            return
        self._schedule(loop)

    def record(self, now: float, late: float) -> None:
        """A probe due `late` seconds before `now` ran at `now`."""
        recent = self._recent
        recent.append((now, late))
        self.late, self.at = late, now
        self.floor = min(lateness for _, lateness in recent)
        self.samples += 1

    @property
    def since(self) -> float:
        """When the oldest probe `floor` looks back over ran (`at` if none did)."""
        return self._recent[0][0] if self._recent else self.at

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
