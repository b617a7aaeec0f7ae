"""The reference cycles a bench server leaves to the garbage collector, and its collections.

Loaded into a bench server (a process run by uvicorn) by `bench/loop_watch_site/
sitecustomize.py` when `VERIFYGUARD_GC_CYCLES=<out>` is set (PYTHONPATH=bench/loop_watch_site;
unlike the loop watch it leaves the server on uvloop). Every collection's generation,
objects collected, CPU and wall ms are recorded through `gc.callbacks`. After
`VERIFYGUARD_GC_CYCLES_AFTER` seconds (30), for `VERIFYGUARD_GC_CYCLES_WINDOW` seconds (60),
whatever the collector finds unreachable is kept (`gc.DEBUG_SAVEALL`) instead of freed; at
the window's end a full collection adds the rest, and the kept objects are grouped into
their cycles (connected through `gc.get_referents`) by the types in them (functions and
coroutines by name). Written to `<out>.<pid>` (JSON) every 10 s and at exit.

    PYTHONPATH=bench/loop_watch_site VERIFYGUARD_GC_CYCLES=/tmp/cycles \\
        .venv/bin/python -m bench.soak --minutes 2 --rate 150 --json
"""

from __future__ import annotations

import atexit
import collections
import gc
import json
import os
import threading
import time
from typing import Any

TOP = 40  # cycle kinds and types written


class Cycles:
    def __init__(self, out: str) -> None:
        self.out = out
        self.started = time.monotonic()
        self.collections: list[tuple[float, int, int, float, float]] = []
        self.census: dict[str, Any] = {}
        self._at = (0.0, 0.0)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._at = (time.perf_counter(), time.thread_time())
            return
        wall, cpu = time.perf_counter() - self._at[0], time.thread_time() - self._at[1]
        self.collections.append(
            (round(time.monotonic() - self.started, 2), info["generation"], info["collected"],
             round(cpu * 1000, 3), round(wall * 1000, 3))
        )  # fmt: skip

    def window(self, after: float, seconds: float) -> None:
        time.sleep(after)
        gc.collect()
        gc.garbage.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        self.census["window"] = [round(time.monotonic() - self.started, 1)]
        time.sleep(seconds)
        gc.collect()  # what the window left unreachable, kept too
        gc.set_debug(0)
        self.census["window"].append(round(time.monotonic() - self.started, 1))
        kept, gc.garbage[:] = list(gc.garbage), []
        self.census |= group(kept)
        del kept
        self.dump()

    def dump(self) -> None:
        data = {
            "seconds": round(time.monotonic() - self.started, 1),
            "threshold": gc.get_threshold(),
            "frozen": gc.get_freeze_count(),
            "collections": self.collections,
            "census": self.census,
        }
        with open(self.out + ".tmp", "w") as f:
            f.write(json.dumps(data))
        os.replace(self.out + ".tmp", self.out)

    def dump_every(self) -> None:
        while True:
            time.sleep(10)
            self.dump()


def group(kept: list[Any]) -> dict[str, Any]:
    """The kept objects' cycles (connected components), counted by the types in them."""
    index = {id(obj): i for i, obj in enumerate(kept)}
    parent = list(range(len(kept)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, obj in enumerate(kept):
        for referent in gc.get_referents(obj):
            j = index.get(id(referent))
            if j is not None and root(i) != root(j):
                parent[root(i)] = root(j)
    members: dict[int, list[int]] = collections.defaultdict(list)
    for i in range(len(kept)):
        members[root(i)].append(i)
    kinds: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for cycle in members.values():
        names = sorted({describe(kept[i]) for i in cycle})
        named = [n for n in names if not n.startswith("builtins.") or "[" in n] or names
        kind = " | ".join(named[:10])
        kinds[kind] += 1
        sizes[kind] += len(cycle)
    types = collections.Counter(describe(obj) for obj in kept)
    return {
        "objects": len(kept),
        "cycles": len(members),
        "kinds": [(n, sizes[k], k) for k, n in kinds.most_common(TOP)],
        "types": types.most_common(TOP),
    }


def describe(obj: Any) -> str:
    kind = type(obj)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if kind.__name__ in ("function", "coroutine"):
        return f"{name}[{obj.__qualname__}]"
    if kind.__name__ == "frame":
        return f"{name}[{obj.f_code.co_qualname}]"
    return name


def install(out: str) -> None:
    cycles = Cycles(out)
    gc.callbacks.append(cycles.on_gc)
    after = float(os.environ.get("VERIFYGUARD_GC_CYCLES_AFTER") or 30)
    seconds = float(os.environ.get("VERIFYGUARD_GC_CYCLES_WINDOW") or 60)
    threading.Thread(target=cycles.window, args=(after, seconds), daemon=True).start()
    threading.Thread(target=cycles.dump_every, daemon=True).start()
    atexit.register(cycles.dump)
