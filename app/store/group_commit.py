"""Group commit on SQLite: request events that arrive together are decided in one
transaction, with one hop to the thread that owns the database connection (its COMMIT).

SQLite has one writer, and the app holds one connection to it (store/base.py); aiosqlite
runs every statement on that connection's thread. Decided one at a time, each request
event paid about ten round trips between the event loop and that thread (policy version,
counts, window read, inbox claim, verification, shadow matches, settle, commit — each a
hop and a wait for the loop's next turn), holding the writer the whole time: under load
the loop's turns grew long, the writer sat idle between statements, and throughput fell
as the load rose.

`GroupCommit.run(work)` queues `work` (an async function of a connection, the same code
the request path runs everywhere else) and returns its result once its transaction has
committed. One task takes whatever is queued — a lone request alone, at once; a burst in
batches — and runs the whole batch (where: below): BEGIN IMMEDIATE, then each `work` in
arrival order, so each sees the counts of those before it (a burst to one key is
cut at exactly its limit), a failing one undone alone (`_run_batch`: savepoints, when one
fails); then one COMMIT for all. No result is released before that commit.

`work` runs to completion without yielding to the event loop: its connection is a
`ThreadConnection`, whose `execute` runs the statement at once on a synchronous
SQLAlchemy connection over the same sqlite3 connection, so every `await` in it completes
without suspending. Work that does suspend (it awaited something else) fails with
`Suspended` and is rolled back; nothing on the request path does.

Where a batch runs. Its works run on the event loop's own thread, and only the COMMIT
(the file's writes, now and then a checkpoint) on the connection's thread. They ran there
too, but two threads busy in one process share the GIL: past capacity the loop answered
the excess while the writer, giving the GIL up around each SQLite call and waiting for it
back, spent half its time in a batch waiting — it decided ~2 ms a decision where it needs
~1, and the excess got the fallback along with much of what the writer should have
decided. On the loop's thread a batch's statements hand nothing over. The loop serves no
one while a batch runs, so a batch holds at most about SLICE of work (by what works took
lately), and the commit's I/O still runs beside the loop. A batch never waits on the
loop's thread for another connection's write lock (a CLI, a backup): BEGIN IMMEDIATE is
tried without the busy timeout, and if the lock is taken, the batch runs on the
connection's thread as before, waiting there.

What every work of a batch would read alike is read once: the batch holds the write lock,
so nothing changes it meanwhile. `prologue` (the composition root's: the policy version)
runs after BEGIN IMMEDIATE when the batch has work queued with `run_primed`, and its value
is handed to each such work as its second argument.

What every work writes that nothing in the batch reads back waits for the batch's end:
a decision's verification row and shadow matches go in one executemany per batch, its
settle rides on the next decision's count (store/thread_connection.py). A decision is
thus three statements (its count, its window read, its inbox claim) where it was six.

Request events come first. Their work (`run_primed`) has a deadline; receipts, results and
unknown events (`run`) have none. Queued in arrival order, a burst of those ahead of a
request event held it back by as many works, and at saturation that was what turned
request events into fallbacks. So each batch takes the request events queued first, in
arrival order, and then at most FILL of the other work (OTHERS when no request event
waits): a request event never waits for more than OTHERS of them, and they never starve.
While request events wait beyond the batch taken (a clump: an attack's burst), the other
work waits for them too, each for up to `grace` after it was queued (the composition
root's: OTHERS_GRACE of the store deadline; past that deadline it would be spooled). With
FILL of them in every batch, they took a fifth of the writer while a clump drained, and
on a file holding an attack's hour range-pumping's clumps outgrew the admission's
headroom by about that: real users' requests got the fallback. A clump shorter than
`grace` now has the writer to itself, and the others are at most `grace` later for it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar, cast

from pydantic_core import to_json
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import StaticPool

from app.store.base import BUSY_TIMEOUT_MS
from app.store.thread_connection import Suspended, ThreadConnection, awaited, drive

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[Any]]
PrimedWork = Callable[[AsyncConnection, Any], Awaitable[Any]]
BATCH = 128  # decisions per transaction at most: a bound on how long the writer is held
SLICE = 0.05  # seconds of request events' work a batch holds the event loop for, by what
# works took lately
FILL = 16  # other works in a batch that has request events in it: a bound on their delay
OTHERS = 32  # other works in a batch without: what a request event arriving meanwhile waits for
OTHERS_GRACE = 0.25  # of their store deadline the others wait behind queued request events
HOLD = 0.1  # seconds the writer keeps the pool's one connection for back-to-back batches


@dataclass(slots=True)
class _Job:
    work: PrimedWork
    future: asyncio.Future[Any]
    primed: bool
    queued: float  # when (time.perf_counter())


@dataclass(slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


@dataclass(eq=False, slots=True)
class GroupCommit:
    """Runs request-path work in shared SQLite transactions (see the module docstring)."""

    engine: AsyncEngine
    on_batch: Callable[[int, float, float], None] | None = None
    """(size, seconds on the writer's thread, seconds in all): for metrics and admission."""
    prologue: Work | None = None
    """Read once per batch for the works queued with `run_primed` (see the module docstring)."""
    grace: float = 0.0
    """Seconds the other works wait behind a clump of request events at most (`_take`)."""
    _queue: list[_Job] = field(default_factory=list, init=False)
    """Request events' work (`run_primed`), in arrival order."""
    _others: list[_Job] = field(default_factory=list, init=False)
    """The rest (`run`), in arrival order: after request events (see the module docstring)."""
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _sync: dict[int, Engine] = field(default_factory=dict, init=False)
    _per_work: float = field(default=0.0, init=False)
    """Seconds a work took lately on the loop's thread (0: none measured yet)."""

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`work`'s result (or exception) once its transaction committed (or rolled back)."""
        result: T = await self._enqueue(lambda conn, _primed: work(conn), primed=False)
        return result

    async def run_primed(self, work: Callable[[AsyncConnection, Any], Awaitable[T]]) -> T:
        """As `run`, with the batch's `prologue` value as `work`'s second argument."""
        result: T = await self._enqueue(work, primed=True)
        return result

    async def _enqueue(self, work: PrimedWork, *, primed: bool) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        job = _Job(work, future, primed, time.perf_counter())
        (self._queue if primed else self._others).append(job)
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._writer(), name="verifyguard-group-commit")
        return await future

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        queued = [job.future for job in (*self._queue, *self._others)]
        await asyncio.gather(*queued, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _writer(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue or self._others:
                await self._drain()
                await asyncio.sleep(0)  # a turn for whoever waits for the pool's connection

    async def _drain(self) -> None:
        """Batches back to back on one checked-out connection, for up to HOLD seconds: each
        batch is then one hop to the writer's thread and back (its COMMIT), and checking the
        connection out and in is paid once. The check-in sends no ROLLBACK after a COMMIT
        (store/base.py `_rollback_if_open`: it was another hop). Under load every hop waits
        for a turn of a busy event loop."""
        until = time.perf_counter() + HOLD
        batch = self._take()
        try:
            async with self.engine.connect() as conn:
                driver: Any = (await conn.get_raw_connection()).driver_connection
                sync = self._engine_over(driver._conn)  # the sqlite3 connection: see below
                while batch:
                    await self._commit(driver, sync, batch)
                    batch = self._take() if time.perf_counter() < until else []
        except Exception as exc:  # no connection: nothing of this batch is stored
            self._settle(batch, [_Outcome(error=exc)] * len(batch))

    def _take(self) -> list[_Job]:
        """Request events first (BATCH at most), then the others: FILL while a request event
        is in the batch, so they never starve; OTHERS when none is (a request event that
        arrives meanwhile waits for that batch). Fewer request events when works took long
        lately: about SLICE of them (the loop's thread runs them; the others are cheap, and
        their counts bound them). While request events wait beyond the batch, only the
        others queued `grace` ago or earlier (a clump has the writer first)."""
        size = BATCH if self._per_work <= SLICE / BATCH else max(1, int(SLICE / self._per_work))
        batch, self._queue = self._queue[:size], self._queue[size:]
        room = FILL if batch else OTHERS
        if self._queue:  # request events wait beyond this batch: only the others overdue
            room = min(room, self._overdue(time.perf_counter() - self.grace))
        others, self._others = self._others[:room], self._others[room:]
        return batch + others

    def _overdue(self, since: float) -> int:
        """How many of the others were queued before `since` (FILL at most)."""
        n = 0
        for job in islice(self._others, FILL):
            if job.queued > since:
                break
            n += 1
        return n

    async def _commit(self, driver: Any, sync: Engine, batch: list[_Job]) -> None:
        started = time.perf_counter()
        inner = 0.0
        prologue = self.prologue if any(j.primed for j in batch) else None
        works = [j.work for j in batch]
        try:
            here = _run_here(sync, prologue, works)
            if here is None:  # another connection holds the write lock: wait on the thread
                inner, outcomes = await _run_on_thread(driver, _run_batch, sync, prologue, works)
            else:
                conn, outcomes = here
                ran = time.perf_counter() - started
                self._per_work = (
                    ran / len(batch)
                    if not self._per_work
                    else (0.8 * self._per_work + 0.2 * ran / len(batch))
                )
                # Closed there too (after a failed COMMIT: its ROLLBACK), so that nothing on
                # this thread touches the connection while that call may still run (this
                # task cancelled at shutdown).
                inner = ran + await _run_on_thread(driver, _commit_and_close, conn)
        except Exception as exc:  # the transaction failed as a whole: nothing is stored
            outcomes = [_Outcome(error=exc)] * len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), inner, time.perf_counter() - started)
        self._settle(batch, outcomes)

    @staticmethod
    def _settle(batch: list[_Job], outcomes: list[_Outcome]) -> None:
        for job, outcome in zip(batch, outcomes, strict=True):
            if job.future.done():
                continue
            if outcome.error is not None:
                job.future.set_exception(outcome.error)
            else:
                job.future.set_result(outcome.value)

    def _engine_over(self, raw: Any) -> Engine:
        """A synchronous engine over the pool's one sqlite3 connection (renewed with it)."""
        engine = self._sync.get(id(raw))
        if engine is None:
            self._sync.clear()
            engine = create_engine(
                "sqlite://",
                creator=lambda: raw,
                poolclass=StaticPool,
                pool_reset_on_return=None,
                json_serializer=_to_json,
            )
            self._sync[id(raw)] = engine
        return engine


def _to_json(value: Any) -> str:
    """JSON columns' text on the request path (its answer; a decision's document comes
    encoded already: store/inbox.py `upsert_request`): pydantic-core's encoder, ~2.5 times
    faster than json.dumps, as on PostgreSQL (store/pg_fastpath.py). NaN and infinities as
    json.dumps writes them."""
    return to_json(value, inf_nan_mode="constants").decode()


async def _run_on_thread(driver: Any, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on the thread of an aiosqlite connection, between its statements.

    aiosqlite runs everything on a connection through `_execute` on the thread that owns
    it, one call at a time. Besides those calls, only the group commit's own batches touch
    the sqlite3 connection, from the event loop's thread while it holds the checkout and
    awaits no call (`_run_here`; store/base.py lets it: `check_same_thread`). The
    pinned aiosqlite range in pyproject.toml keeps this private method where it is, and
    every SQLite test runs through it.
    """
    result: T = await driver._execute(function, *args)
    return result


def _run_batch(
    engine: Engine, prologue: Work | None, works: list[PrimedWork]
) -> tuple[float, list[_Outcome]]:
    """One transaction: the prologue, then each work in order; one commit. Also the
    seconds it took.

    Works rarely fail after writing, so first without savepoints (two statements fewer per
    work); if one does — or a deferred write does, at the batch's end — the transaction is
    rolled back and the batch run again with each work in a savepoint of its own, its
    deferred writes run before its savepoint is released, so that one alone is undone. A
    work that fails before it wrote or deferred anything (a decision found late) has
    nothing to undo either way. Works are therefore run twice at times: they change nothing
    outside the connection.
    """
    started = time.perf_counter()
    with engine.connect() as sync:
        sync.exec_driver_sql("BEGIN IMMEDIATE")
        outcomes = _attempt(sync, prologue, works, isolated=False)
        if outcomes is None:
            sync.rollback()
            sync.exec_driver_sql("BEGIN IMMEDIATE")
            outcomes = _attempt(sync, prologue, works, isolated=True)
        assert outcomes is not None
        sync.commit()
    return time.perf_counter() - started, outcomes


def _run_here(
    engine: Engine, prologue: Work | None, works: list[PrimedWork]
) -> tuple[Connection, list[_Outcome]] | None:
    """`_run_batch` up to its COMMIT, on this thread (the event loop's), the transaction
    left open on the connection returned; None, having waited for nothing, if another
    connection holds the write lock (what ran is rolled back)."""
    sync = engine.connect()
    try:
        if _begin_at_once(sync):
            outcomes = _attempt(sync, prologue, works, isolated=False)
            if outcomes is not None:
                return sync, outcomes
            sync.rollback()
            if _begin_at_once(sync):
                outcomes = _attempt(sync, prologue, works, isolated=True)
                assert outcomes is not None
                return sync, outcomes
    except BaseException:
        sync.close()
        raise
    sync.close()
    return None


def _begin_at_once(sync: Connection) -> bool:
    """BEGIN IMMEDIATE without the busy timeout: False if another connection holds the
    write lock (SQLITE_BUSY) instead of waiting for it."""
    raw = sync.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA busy_timeout=0")
    try:
        sync.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as exc:
        if getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
            return False
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return True


def _commit_and_close(sync: Connection) -> float:
    """COMMIT and close (on the connection's thread); the seconds the COMMIT took."""
    started = time.perf_counter()
    try:
        sync.commit()
        return time.perf_counter() - started
    finally:
        sync.close()


def _attempt(
    sync: Connection, prologue: Work | None, works: list[PrimedWork], *, isolated: bool
) -> list[_Outcome] | None:
    """Run the batch in a new transaction, left open; None: a work failed after writing, or
    a deferred write failed (only when not `isolated`: the caller rolls back). The
    caller began the transaction."""
    conn = ThreadConnection(sync)
    primed = drive(awaited(prologue(cast(AsyncConnection, conn)))) if prologue else None
    outcomes: list[_Outcome] = []
    for work in works:
        savepoint = sync.begin_nested() if isolated else None
        before = conn.statements
        try:
            value = drive(awaited(work(cast(AsyncConnection, conn), primed)))
            if isolated:
                conn.flush()  # its deferred writes, inside its savepoint
        except Exception as exc:
            if savepoint is not None:
                conn.discard()  # what it left deferred: the writes before it ran already
                savepoint.rollback()
            elif conn.statements > before:
                return None
            outcomes.append(_Outcome(error=exc))
        else:
            if savepoint is not None:
                savepoint.commit()
            outcomes.append(_Outcome(value=value))
    try:
        conn.flush()
    except Exception:
        if isolated:
            raise  # nothing left deferred: each work flushed its own
        return None  # a deferred write failed: run again, each work flushing its own
    return outcomes


__all__ = ["BATCH", "FILL", "HOLD", "OTHERS", "GroupCommit", "Suspended"]
