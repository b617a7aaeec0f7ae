"""Event-loop blocking of a bench server, load-independent: each loop step's CPU time.

Loaded into the server by `bench/loop_watch_site/sitecustomize.py` when
`VERIFYGUARD_LOOP_WATCH=<out.json>` is set (PYTHONPATH=bench/loop_watch_site): the server
then runs on asyncio's own loop (uvloop's steps cannot be wrapped), each `Handle._run` is
timed in thread CPU seconds (what the step cost, whoever else shares the machine) and wall
seconds, and a step over `STEP_MS` of CPU is kept with what ran (the task's coroutine, and
the innermost app frames a sampling thread saw while it ran). Collections of the garbage
collector are timed through `gc.callbacks`. Written to the JSON file every 10 s and at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextvars
import gc
import json
import os
import sys
import threading
import time
import traceback
from typing import Any

# Steps kept with their stacks (VERIFYGUARD_LOOP_WATCH_STEP_MS: 2 to see the smaller ones).
STEP_MS = float(os.environ.get("VERIFYGUARD_LOOP_WATCH_STEP_MS") or 5.0)
# A step's CPU, binned: its upper edges in ms (the bins' "sizes": steps per range).
SIZES_MS = (1.0, 2.0, 5.0, 10.0, 20.0, float("inf"))
SAMPLE_S = 0.002
# VERIFYGUARD_LOOP_WATCH_GC_CENSUS=1: each young collection's objects by type (costs CPU).
CENSUS = bool(os.environ.get("VERIFYGUARD_LOOP_WATCH_GC_CENSUS"))
# VERIFYGUARD_LOOP_WATCH_REQUESTS=1: every callback's stages (bench/soak_profile.py `tail`).
REQUESTS = bool(os.environ.get("VERIFYGUARD_LOOP_WATCH_REQUESTS"))
BIN_S = 5
# The callback a step or a batch submit works for (copied into the tasks it starts).
SERVING: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "loop_watch_serving", default=None
)


class Watch:
    def __init__(self, out: str) -> None:
        self.out = out
        self.started = time.monotonic()
        self.started_wall = time.time()  # the same instant on the wall clock (the soak's)
        self.steps: list[dict[str, Any]] = []
        self.gcs: list[dict[str, Any]] = []
        self.gc_totals: dict[int, list[float]] = {}
        self.tracked: list[tuple[int, int]] = []
        self.batches_patched = False
        self.waits: dict[str, list[float]] = collections.defaultdict(list)  # submit -> outcome
        self.behind: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        # Each batch's size and write ms, in two flat lists: ints and floats are not tracked
        # by the collector, a tuple per batch was (and set off collections of its own).
        self.writes: dict[str, tuple[list[int], list[float]]] = collections.defaultdict(
            lambda: ([], [])
        )
        # Per callback (VERIFYGUARD_LOOP_WATCH_REQUESTS=1): the finished ones (start, total,
        # own steps' CPU, steps, longest, the stages' waits), each already a JSON line: a
        # string is not tracked by the collector, where a list and dicts per callback kept for
        # 10 s made the watched server collect every few seconds (the collections it then
        # reported as the request path's). SERVING holds the running one's.
        self.requests: list[str] = []
        self.batch_of: dict[int, tuple[float, float, int]] = {}  # id(item) -> its batch
        self.callbacks_patched = not REQUESTS
        self.count = 0
        self.cpu_total = 0.0
        self.current: tuple[float, str] | None = None
        self.stacks: collections.Counter[str] = collections.Counter()
        self.main = threading.get_ident()
        self.gc_started: tuple[float, float] | None = None
        self.gc_in_step = [0.0, -1]  # collections' CPU within the running step, top generation
        self.censuses: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.bins: dict[int, dict[str, Any]] = {}

    def bin(self) -> dict[str, Any]:
        key = int(time.time()) // BIN_S * BIN_S
        found = self.bins.get(key)
        if found is None:
            found = self.bins[key] = {
                "steps": 0, "cpu_ms": 0.0, "long": 0, "long_cpu_ms": 0.0,
                "tasks": collections.Counter(), "long_what": collections.Counter(),
                "gc": {}, "sql": {}, "sizes": [0] * len(SIZES_MS),
            }  # fmt: skip
        return found

    def run(self, handle: Any, original: Any) -> None:
        label = None
        if not self.batches_patched and "app.services.intake.batching" in sys.modules:
            self.patch_batcher(sys.modules["app.services.intake.batching"].Batcher)
        if not self.callbacks_patched and "app.api.callbacks" in sys.modules:
            self.patch_callbacks(sys.modules["app.api.callbacks"].CallbackFirst)
        cpu, wall = time.thread_time(), time.perf_counter()
        self.current = (wall, "")
        self.stacks = collections.Counter()
        self.gc_in_step = [0.0, -1]
        try:
            original(handle)
        finally:
            spent = time.thread_time() - cpu
            took = time.perf_counter() - wall
            self.current = None
            self.count += 1
            self.cpu_total += spent
            bin = self.bin()
            bin["steps"] += 1
            bin["cpu_ms"] += spent * 1000
            bin["sizes"][next(i for i, top in enumerate(SIZES_MS) if spent * 1000 < top)] += 1
            context = getattr(handle, "_context", None) if REQUESTS else None
            record = context.get(SERVING) if context is not None else None
            if record is not None and record["open"]:
                record["cpu"] += spent
                record["steps"] += 1
                record["top"] = max(record["top"], spent)
            name = _task_name(handle)
            if name is not None and not name.startswith("Task-"):
                bin["tasks"][name] += spent * 1000
            if spent * 1000 >= STEP_MS:
                label = _label(handle)
                gc_ms, gen = self.gc_in_step
                if gc_ms * 2 >= spent * 1000:  # mostly a collection: name it first
                    label = f"gc{gen} in {label}"
                bin["long"] += 1
                bin["long_cpu_ms"] += spent * 1000
                bin["long_what"][label] += 1
                self.steps.append(
                    {
                        "at": round(wall - self.started, 3),
                        "cpu_ms": round(spent * 1000, 2),
                        "wall_ms": round(took * 1000, 2),
                        "what": label,
                        "gc_ms": round(gc_ms, 2),
                        "stacks": self.stacks.most_common(4),
                    }
                )

    def patch_batcher(self, batcher: Any) -> None:
        """Each batch's size and write time, and each item's time from submit to outcome
        (its wait for a batch in flight and its own batch's write), per batcher name."""
        self.batches_patched = True
        submit, write = batcher.submit, batcher._write
        watch = self

        async def timed_submit(self: Any, item: Any) -> Any:
            started = time.perf_counter()
            busy = len(self._writing) >= getattr(self, "concurrency", 1)  # behind one in flight
            watch.behind[self.name][busy] += 1
            queued = len(self._queue)
            try:
                return await submit(self, item)
            finally:
                ended = time.perf_counter()
                watch.waits[self.name].append(round(1000 * (ended - started), 3))
                record = SERVING.get()
                batch = watch.batch_of.pop(id(item), None)
                if record is not None and batch is not None:
                    # Waited for its batch to start, its batch's write, then for its turn.
                    record["stages"][self.name.removeprefix("verifyguard-")] = [
                        round(1000 * (batch[0] - started), 2),
                        round(1000 * (batch[1] - batch[0]), 2),
                        round(1000 * (ended - batch[1]), 2),
                        batch[2], int(busy), queued,
                    ]  # fmt: skip

        async def timed_write(self: Any, batch: Any) -> None:
            started = time.perf_counter()
            try:
                await write(self, batch)
            finally:
                ended = time.perf_counter()
                took = round(1000 * (ended - started), 3)
                sizes, times = watch.writes[self.name]
                sizes.append(len(batch))
                times.append(took)
                if REQUESTS:
                    for item, _ in batch:
                        watch.batch_of[id(item)] = (started, ended, len(batch))

        batcher.submit, batcher._write = timed_submit, timed_write

    def patch_callbacks(self, app: Any) -> None:
        """Each callback's time in the server (from its ASGI call to its answer's last
        byte handed to the transport), its own steps' CPU and its batches' stages."""
        self.callbacks_patched = True
        serve = app._serve_callback
        watch = self

        async def timed_serve(self: Any, scope: Any, receive: Any, send: Any) -> None:
            record = {"cpu": 0.0, "steps": 0, "top": 0.0, "stages": {}, "open": True}
            SERVING.set(record)
            started = time.perf_counter()
            try:
                await serve(self, scope, receive, send)
            finally:
                ended = time.perf_counter()
                record["open"] = False
                watch.requests.append(json.dumps(
                    [round(started - watch.started, 4), round(1000 * (ended - started), 2),
                     round(1000 * record["cpu"], 2), record["steps"],
                     round(1000 * record["top"], 2), record["stages"]]
                ))  # fmt: skip

        app._serve_callback = timed_serve

    def sample(self) -> None:
        while True:
            time.sleep(SAMPLE_S)
            current = self.current
            if current is None or time.perf_counter() - current[0] < STEP_MS / 1000:
                continue
            frame = sys._current_frames().get(self.main)
            if frame is not None:
                self.stacks[_app_frames(frame)] += 1

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if CENSUS and info["generation"] < 2:
                self.census(info["generation"])
            self.gc_started = (time.perf_counter(), time.thread_time())
            return
        if self.gc_started is None:
            return
        wall = time.perf_counter() - self.gc_started[0]
        cpu = time.thread_time() - self.gc_started[1]
        gen = self.gc_totals.setdefault(info["generation"], [0, 0.0])
        gen[0] += 1
        gen[1] += cpu
        self.gc_in_step[0] += cpu * 1000
        self.gc_in_step[1] = max(self.gc_in_step[1], info["generation"])
        per = self.bin()["gc"].setdefault(info["generation"], [0, 0.0, 0.0])
        per[0] += 1
        per[1] += cpu * 1000
        per[2] = max(per[2], cpu * 1000)
        if cpu * 1000 >= 1:
            self.gcs.append(
                {
                    "at": round(time.monotonic() - self.started, 3),
                    "gen": info["generation"],
                    "cpu_ms": round(cpu * 1000, 3),
                    "wall_ms": round(wall * 1000, 3),
                    "collected": info["collected"],
                }
            )
        self.gc_started = None

    def census(self, generation: int) -> None:
        """What a collection of `generation` is about to visit: its objects by type, and
        the items of its containers (a young list or dict is traversed whole)."""
        found: collections.Counter[str] = collections.Counter()
        items = 0
        for obj in gc.get_objects(generation):
            found[type(obj).__qualname__] += 1
            if isinstance(obj, list | dict | set):
                items += len(obj)
        self.censuses.append(
            {"at": round(time.monotonic() - self.started, 3), "gen": generation,
             "objects": sum(found.values()), "items": items, "types": found.most_common(12)}
        )  # fmt: skip

    def statement(self, query: str, took: float, rows: int) -> None:
        text = " ".join(query.split())[:90]
        entry = self.bin()["sql"].setdefault(text, [0, 0.0, 0, 0.0])
        entry[0] += 1
        entry[1] += took * 1000
        entry[2] += rows
        entry[3] = max(entry[3], took * 1000)

    def patch_asyncpg(self) -> None:
        """Every statement's wall time and rows: asyncpg's two execution paths (prepared
        statements, as SQLAlchemy's dialect uses them; and a connection's own calls)."""
        try:
            from asyncpg import connection, prepared_stmt
        except ImportError:
            return
        watch = self
        prepared = prepared_stmt.PreparedStatement
        do_prepared = prepared._PreparedStatement__do_execute  # type: ignore[attr-defined]
        do_connection = connection.Connection._do_execute

        async def timed_prepared(self: Any, executor: Any) -> Any:
            started = time.perf_counter()
            result = await do_prepared(self, executor)
            watch.statement(self._query, time.perf_counter() - started, _rows(result))
            return result

        async def timed_connection(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = await do_connection(self, query, *args, **kwargs)
            watch.statement(query, time.perf_counter() - started, _rows(result[0]))
            return result

        prepared._PreparedStatement__do_execute = timed_prepared  # type: ignore[attr-defined]
        connection.Connection._do_execute = timed_connection  # type: ignore[method-assign]

    def dump(self) -> None:
        data = {
            "seconds": round(time.monotonic() - self.started, 1),
            "started_wall": self.started_wall,
            "steps_total": self.count,
            "loop_cpu_s": round(self.cpu_total, 3),
            "long_steps": self.steps,
            "gc": {g: [n, round(c, 3)] for g, (n, c) in self.gc_totals.items()},
            "gc_over_1ms": self.gcs,
            "gc_census": self.censuses,
            "gen2_objects": self.tracked,
            "batch_waits_ms": {k: _spread(v) for k, v in list(self.waits.items())},
            "submits_free_behind": dict(self.behind),
            "batch_writes_ms": {
                k: _spread(list(times)) | {"size": _spread(list(sizes))}
                for k, (sizes, times) in list(self.writes.items())
            },
            "bins": {key: dict(value) for key, value in list(self.bins.items())},
        }
        tmp = self.out + ".tmp"
        try:
            text = json.dumps(data)
        except RuntimeError:  # a bin changed while copied (the loop runs on): next time
            return
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.out)
        self.flush_requests()

    def flush_requests(self) -> None:
        """The callbacks finished since the last flush, appended a line each (each encoded
        as it finished: a single large encoding would hold the GIL, stalling the loop)."""
        with self.lock:
            done, self.requests = self.requests, []
            if done:
                with open(self.out + ".requests", "a") as f:
                    for line in done:
                        f.write(line + "\n")

    def dump_every(self) -> None:
        while True:
            time.sleep(10)
            # What a full collection would visit (the frozen startup objects aside).
            self.tracked.append((round(time.monotonic() - self.started), len(gc.get_objects(2))))
            self.dump()


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[int(q * (len(ordered) - 1))]

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}


def _rows(result: Any) -> int:
    data = result[0] if isinstance(result, tuple) else result
    return len(data) if isinstance(data, list) else 0


def _task_name(handle: Any) -> str | None:
    task = getattr(getattr(handle, "_callback", None), "__self__", None)
    return task.get_name() if isinstance(task, asyncio.Task) else None


def _label(handle: Any) -> str:
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", repr(coro))
        return f"task {task.get_name()} {name}"
    return repr(callback)[:160]


def _app_frames(frame: Any) -> str:
    picked = []
    for entry in traceback.extract_stack(frame)[::-1]:
        if "loop_watch" in entry.filename:
            continue
        if "/app/" in entry.filename:
            picked.append(f"{entry.filename.rsplit('/app/', 1)[-1]}:{entry.lineno} {entry.name}")
        elif not picked:
            picked.append(f"{entry.filename.rsplit('/', 1)[-1]}:{entry.lineno} {entry.name}")
        if len(picked) >= 5:
            break
    return " < ".join(picked)


def install(out: str) -> None:
    """Time every loop step and collection of this process; write them to `out`."""
    watch = Watch(out)
    original = asyncio.events.Handle._run

    def timed(self: Any) -> None:
        watch.run(self, original)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    gc.callbacks.append(watch.on_gc)
    watch.patch_asyncpg()
    threading.Thread(target=watch.sample, daemon=True).start()
    threading.Thread(target=watch.dump_every, daemon=True).start()
    atexit.register(watch.dump)
    try:
        import uvicorn.loops.uvloop as uvloop_module
        from uvicorn.loops.asyncio import asyncio_loop_factory

        uvloop_module.uvloop_loop_factory = asyncio_loop_factory
    except ImportError:
        pass
