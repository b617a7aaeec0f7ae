"""The garbage collector, set for a long-running server process."""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

# Generation 0 is collected every N net new container objects. At the default of 700 the
# objects of the requests in flight (64 concurrent decisions) crossed it many times a second,
# so each collection scanned and promoted live request state, and the promotions soon set off
# full collections (tens of milliseconds on a 2-core VM, every request paused). At 10,000 the
# working set of the requests in flight stays below it: collections happen as caches grow.
# Measured in the soak's server (docs/operations.md, "Garbage collection in the soak"): the
# request path leaves no cyclic garbage, so once the caches are full (the first minute) the
# young generation rarely reaches 10,000 net new objects: 0-1 collection of generation 0 a
# minute at 150 request events/s (2-5 ms of CPU each), none of generations 1 or 2 in the
# runs measured. A lower threshold would traverse the requests in flight more often.
SERVER_THRESHOLDS = (10_000, 20, 20)


@contextmanager
def server_gc() -> Iterator[None]:
    """For the life of the block: what startup allocated (modules, libphonenumber metadata,
    the compiled policy) frozen out of the collector's reach, and collections rarer. Both
    undone afterwards: tests make and drop apps in one process."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


_paused = 0  # blocks inside `young_collections_paused`, across tasks
# The longest a pause lasts: a refresh stuck on a database that stopped answering (no
# statement timeout) must not leave the collector off, cyclic garbage piling up.
PAUSE_LIMIT_S = 10.0


@contextmanager
def young_collections_paused(limit: float = PAUSE_LIMIT_S) -> Iterator[None]:
    """No automatic collection for the life of the block, or `limit` seconds of it at most
    (nested and concurrent blocks alike; the collector's state as before once the last one
    ends).

    For a background job that builds many short-lived containers (the baseline refresh:
    ~9,000 changes, their keys and rows every 30 s at 300/s): each crossing of generation 0's
    threshold inside it was a collection traversing them all, 2-6 ms of CPU on the event
    loop (3-4 per refresh), and their survivors went on to lengthen generation 1's passes
    (13-20 ms; docs/operations.md). Paused, they are freed by their reference counts when the
    job drops them; the next collection finds only what outlived the job. The request path's
    own garbage waits that long too (a refresh takes about a second)."""
    global _paused
    if _paused == 0 and not gc.isenabled():  # collections are off anyway (a test, a caller)
        yield
        return
    _paused += 1
    gc.disable()
    try:
        timer = asyncio.get_running_loop().call_later(limit, gc.enable)
    except RuntimeError:  # no event loop: the block's own length bounds it
        timer = None
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        _paused -= 1
        if _paused == 0:
            gc.enable()


# A collection's pause, in seconds: the bounds of `verifyguard_gc_pause_seconds`'s buckets.
PAUSE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


class Pauses:
    """Every collection's pause (wall seconds, the event loop stopped) per generation, from
    `gc.callbacks`: two clock reads a collection. Process-wide, as the collector is."""

    def __init__(self) -> None:
        self.buckets = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.sums[generation] += took
        counts = self.buckets[generation]
        counts[bisect.bisect_left(PAUSE_BUCKETS, took)] += 1  # the last: +Inf


PAUSES = Pauses()


class PauseCollector(Collector):
    """`verifyguard_gc_pause_seconds{generation}` on a registry: how long each collection
    stopped the process (the client's python_gc_* count them, not their length)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        if PAUSES not in gc.callbacks:
            gc.callbacks.append(PAUSES)
        registry.register(self)

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "verifyguard_gc_pause_seconds",
            "Garbage collections by generation and how long each stopped the process.",
            labels=["generation"],
        )
        for generation, counts in enumerate(PAUSES.buckets):
            bounds = [*(str(b) for b in PAUSE_BUCKETS), "+Inf"]
            cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
            family.add_metric(
                [str(generation)],
                list(zip(bounds, cumulative, strict=True)),
                PAUSES.sums[generation],
            )
        yield family
