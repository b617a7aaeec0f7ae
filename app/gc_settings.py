"""The garbage collector, set for a long-running server process."""

from __future__ import annotations

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
