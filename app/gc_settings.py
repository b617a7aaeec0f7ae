"""The garbage collector, set for a long-running server process."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Generation 0 is collected every N net new container objects. At the default of 700 the
# objects of the requests in flight (64 concurrent decisions) crossed it many times a second,
# so each collection scanned and promoted live request state, and the promotions soon set off
# full collections (tens of milliseconds on a 2-core VM, every request paused). At 10,000 the
# working set of the requests in flight stays below it: collections happen as caches grow.
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
