"""Group commit on SQLite (store/group_commit.py): request events that arrive together
share one transaction, each in order and isolated from the others' failures, and none is
answered before the transaction committed; the works run on the event loop's thread, in
batches it is held for a bounded time, and never wait there for another connection's lock."""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.main import build_runtime, create_app
from app.sinch import samples
from app.store.base import create_engine
from app.store.group_commit import BATCH, OTHERS, OTHERS_GRACE, SLICE, GroupCommit, Suspended
from tests.conftest import make_settings
from tests.services.test_velocity import ALLOWED_LIMIT, NUMBER_LIMIT, _install, _policy
from tests.support import SinchSender


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)"))
        await conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await conn.execute(
            text("CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id))")
        )
    yield engine
    await engine.dispose()


async def _add(conn: AsyncConnection, key: str) -> int:
    """Increment a counter and return its new value (as the request path's counts do)."""
    upsert = "INSERT INTO t VALUES (:k, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1"
    await conn.execute(text(upsert), {"k": key})
    result = await conn.execute(text("SELECT n FROM t WHERE k = :k"), {"k": key})
    return int(result.scalar_one())


class _Suspend:
    def __await__(self) -> Any:
        yield


async def test_work_that_arrives_together_shares_a_transaction_in_order(
    sqlite: AsyncEngine,
) -> None:
    sizes: list[int] = []
    group = GroupCommit(sqlite, on_batch=lambda size, *_: sizes.append(size))
    totals = await asyncio.gather(*(group.run(lambda c: _add(c, "a")) for _ in range(50)))
    await group.close()
    assert sorted(totals) == list(range(1, 51)), "each saw a distinct, ordered total"
    assert sum(sizes) == 50
    assert max(sizes) > 1, "nothing was batched"
    assert len(sizes) < 50


async def test_a_lone_request_is_not_held_back(sqlite: AsyncEngine) -> None:
    sizes: list[int] = []
    group = GroupCommit(sqlite, on_batch=lambda size, *_: sizes.append(size))
    for expected in range(1, 4):
        assert await group.run(lambda c: _add(c, "b")) == expected
    await group.close()
    assert sizes == [1, 1, 1]


async def test_a_failing_work_is_rolled_back_alone(sqlite: AsyncEngine) -> None:
    group = GroupCommit(sqlite)

    async def fails(conn: AsyncConnection) -> int:
        await _add(conn, "c")
        raise ValueError("this one fails after writing")

    async def suspends(conn: AsyncConnection) -> int:
        await _add(conn, "c")
        await _Suspend()  # waits for an event loop: cannot run on the writer thread
        return 0

    outcomes = await asyncio.gather(
        group.run(lambda c: _add(c, "c")),
        group.run(fails),
        group.run(suspends),
        group.run(lambda c: _add(c, "c")),
        return_exceptions=True,
    )
    await group.close()
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], ValueError)
    assert isinstance(outcomes[2], Suspended)
    assert outcomes[3] == 2, "the failed ones' writes were rolled back before it ran"
    async with sqlite.connect() as conn:
        stored = (await conn.execute(text("SELECT n FROM t WHERE k = 'c'"))).scalar_one()
    assert stored == 2


async def test_a_work_failing_before_it_wrote_costs_the_others_nothing(
    sqlite: AsyncEngine,
) -> None:
    """Without savepoints first: only a work that fails after writing makes the batch run
    again (with one savepoint each); one that fails before any statement does not."""
    runs: list[str] = []
    group = GroupCommit(sqlite)

    async def counted(conn: AsyncConnection, name: str) -> int:
        runs.append(name)
        return await _add(conn, "d")

    async def late(_conn: AsyncConnection) -> int:
        runs.append("late")
        raise TimeoutError("found late before its first statement")

    outcomes = await asyncio.gather(
        group.run(lambda c: counted(c, "first")),
        group.run(late),
        group.run(lambda c: counted(c, "second")),
        return_exceptions=True,
    )
    await group.close()
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], TimeoutError)
    assert sorted(runs) == ["first", "late", "second"], "the batch ran twice"


async def test_nothing_is_answered_before_the_commit(sqlite: AsyncEngine, tmp_path: Path) -> None:
    group = GroupCommit(sqlite)
    other = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    try:
        value = await group.run(lambda c: _add(c, "d"))
        async with other.connect() as conn:  # another connection sees it: committed
            seen = (await conn.execute(text("SELECT n FROM t WHERE k = 'd'"))).scalar_one()
        assert seen == value == 1

        async def breaks_the_commit(conn: AsyncConnection) -> None:
            # Deferred: the violation surfaces only at COMMIT, failing the whole batch.
            await conn.execute(text("PRAGMA defer_foreign_keys = ON"))
            await conn.execute(text("INSERT INTO child VALUES (1, 999)"))

        outcomes = await asyncio.gather(
            group.run(lambda c: _add(c, "d")), group.run(breaks_the_commit), return_exceptions=True
        )
        assert all(isinstance(o, Exception) for o in outcomes), outcomes
        async with other.connect() as conn:
            seen = (await conn.execute(text("SELECT n FROM t WHERE k = 'd'"))).scalar_one()
        assert seen == 1, "a batch whose commit failed stored nothing"
        assert await group.run(lambda c: _add(c, "d")) == 2, "and the next batch works"
    finally:
        await group.close()
        await other.dispose()


async def test_concurrent_bursts_at_one_key_are_cut_at_the_limit(
    tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "app.db")
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", tmp_path)
    settings = settings.model_copy(update={"decision_deadline_ms": 5000})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            http.app = app  # type: ignore[attr-defined]
            sender = SinchSender(http, path=settings.callback_path)
            await _install(sender, _policy(NUMBER_LIMIT, ALLOWED_LIMIT))
            numbers = [f"+4670{random.randint(1_000_000, 9_999_999)}" for _ in range(3)]
            events: list[dict[str, Any]] = [
                samples.request_event(number=number) for number in numbers for _ in range(30)
            ]
            random.shuffle(events)
            responses = await asyncio.gather(*(sender.post(e) for e in events))
            batches = app.state.runtime.metrics.registry.get_sample_value(
                "verifyguard_decision_batch_size_count"
            )
    assert {r.status_code for r in responses} == {200}
    by_number: dict[str, Counter[str]] = {n: Counter() for n in numbers}
    for event, response in zip(events, responses, strict=True):
        by_number[event["identity"]["endpoint"]][response.json()["action"]] += 1
    # The allowed-only limit (3 allowed per hour) cuts first, exactly, for each number.
    assert all(actions == Counter(allow=3, deny=27) for actions in by_number.values())
    assert batches is not None and batches < len(events), "the burst was not batched"


async def test_a_batch_reads_the_policy_version_once(tmp_path: Path, sqlite_template: Path) -> None:
    """Every decision checks that the policy it compiled is still the live one; in a batch
    that holds the write lock the version cannot change, so it is read once per batch."""
    shutil.copy(sqlite_template, tmp_path / "app.db")
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", tmp_path)
    app = create_app(settings)
    reads: list[str] = []
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            sender = SinchSender(http, path=settings.callback_path)
            await sender.post(samples.request_event(number="+46701234567"))  # compiles the policy
            engine: AsyncEngine = app.state.runtime.engine
            async with engine.connect() as conn:
                raw: Any = (await conn.get_raw_connection()).driver_connection
            raw._conn.set_trace_callback(
                lambda sql: reads.append(sql) if "policy_state.version" in sql else None
            )
            metrics = app.state.runtime.metrics.registry
            before = metrics.get_sample_value("verifyguard_decision_batch_size_count") or 0.0
            numbers = [f"+4670{n}" for n in random.sample(range(1_000_000, 9_999_999), 40)]
            responses = await asyncio.gather(
                *(sender.post(samples.request_event(number=n)) for n in numbers)
            )
            batches = metrics.get_sample_value("verifyguard_decision_batch_size_count") or 0.0
            raw._conn.set_trace_callback(None)
    assert {r.status_code for r in responses} == {200}
    assert all(r.json()["action"] in {"allow", "deny"} for r in responses)
    assert batches - before < len(numbers), "the burst was not batched"
    assert len(reads) == batches - before, "one version read per batch, not per decision"


async def test_request_events_run_before_other_work_queued_ahead(sqlite: AsyncEngine) -> None:
    """Receipts and results (`run`) queued first never hold a request event's work
    (`run_primed`) back: it runs first; they follow in the same batch."""
    ran: list[str] = []

    def work(name: str) -> Any:
        async def record(conn: AsyncConnection, *_: Any) -> str:
            ran.append(name)
            return name

        return record

    sizes: list[int] = []
    group = GroupCommit(sqlite, on_batch=lambda size, *_: sizes.append(size))
    others = [group.run(work(f"result-{n}")) for n in range(3)]
    await asyncio.gather(*others, group.run_primed(work("request")))
    await group.close()
    assert ran == ["request", "result-0", "result-1", "result-2"]
    assert sizes == [4]


async def test_other_work_is_not_starved_by_request_events(sqlite: AsyncEngine) -> None:
    """A batch full of request events still takes some of the other work queued (FILL), so
    a stream of request events never holds a receipt back for longer than one batch."""
    ran: list[str] = []

    def work(name: str) -> Any:
        async def record(conn: AsyncConnection, *_: Any) -> str:
            ran.append(name)
            return name

        return record

    group = GroupCommit(sqlite)
    requests = [group.run_primed(work(f"request-{n}")) for n in range(BATCH + 10)]
    await asyncio.gather(group.run(work("receipt")), *requests)
    await group.close()
    assert ran.index("receipt") == BATCH, "after the first batch's request events, before the rest"


async def test_a_request_event_waits_for_a_bounded_batch_of_other_work(
    sqlite: AsyncEngine,
) -> None:
    """A request event that arrives while the writer runs a batch of other work only waits
    for that batch, and that batch holds OTHERS at most (it held up to BATCH)."""
    ran: list[str] = []

    def work(name: str) -> Any:
        async def record(conn: AsyncConnection, *_: Any) -> str:
            ran.append(name)
            return name

        return record

    group = GroupCommit(sqlite)
    others = [asyncio.create_task(group.run(work(f"receipt-{n}"))) for n in range(100)]
    for _ in range(3):
        await asyncio.sleep(0)  # the writer took its first batch: it now waits for the thread
    await group.run_primed(work("request"))
    await asyncio.gather(*others)
    await group.close()
    assert ran.index("request") == OTHERS


async def test_works_run_on_the_event_loops_thread(sqlite: AsyncEngine) -> None:
    """A batch's statements hand nothing over to another thread (the GIL they shared made
    the writer wait half its time past capacity): only the COMMIT runs on the connection's."""
    threads: list[int] = []

    async def where(conn: AsyncConnection) -> int:
        threads.append(threading.get_ident())
        return await _add(conn, "here")

    group = GroupCommit(sqlite)
    totals = await asyncio.gather(*(group.run(where) for _ in range(20)))
    await group.close()
    assert sorted(totals) == list(range(1, 21))
    assert set(threads) == {threading.get_ident()}


async def test_a_lock_held_elsewhere_is_waited_for_off_the_event_loop(
    sqlite: AsyncEngine, tmp_path: Path
) -> None:
    """Another connection (a CLI, a backup) holding the write lock: the batch does not wait
    for it on the event loop's thread (that would stall every answer for the busy timeout)
    but on the connection's, while the loop runs on; then it commits."""
    begins: list[int] = []  # the threads each BEGIN of the group's connection started on

    def traced(statement: str) -> None:
        if statement.startswith("BEGIN"):
            begins.append(threading.get_ident())

    async with sqlite.connect() as conn:  # the pool's one connection: the group's too
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.set_trace_callback(traced)
    loop_thread = threading.get_ident()
    other = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    group = GroupCommit(sqlite)
    try:
        waiting = asyncio.create_task(group.run(lambda c: _add(c, "locked")))
        for _ in range(10_000):  # until a BEGIN waits off the loop's thread
            if any(thread != loop_thread for thread in begins):
                break
            await asyncio.sleep(0.001)
        assert begins[:1] == [loop_thread], "tried on the loop's thread first"
        assert any(thread != loop_thread for thread in begins), "never waited elsewhere"
        assert not waiting.done(), "it went ahead of the lock"
        other.execute("COMMIT")
        assert await waiting == 1
        assert await group.run(lambda c: _add(c, "locked")) == 2, "the next batch works"
        assert begins[-1] == loop_thread, "and runs on the loop's thread again"
    finally:
        other.close()
        await group.close()


async def test_a_batch_holds_the_event_loop_for_about_a_slice(sqlite: AsyncEngine) -> None:
    """Request events whose works took long lately make the next batches smaller (SLICE):
    the loop answers between them. The first batch, with nothing measured yet, takes what is
    queued."""
    sizes: list[int] = []
    took = SLICE / 5  # each work: a fifth of a slice, or more

    async def slow(conn: AsyncConnection, _primed: Any) -> int:
        time.sleep(took)  # noqa: ASYNC251 (a batch's work blocks the loop: what is bounded)
        return await _add(conn, "slow")

    group = GroupCommit(sqlite, on_batch=lambda size, *_: sizes.append(size))
    assert await group.run_primed(slow) == 1
    totals = await asyncio.gather(*(group.run_primed(slow) for _ in range(40)))
    await group.close()
    assert sorted(totals) == list(range(2, 42))
    assert sizes[0] == 1 and sum(sizes) == 41
    assert max(sizes[1:]) <= 5, sizes


@pytest.mark.parametrize("grace", [0.05, 10.0])
async def test_other_work_waits_behind_a_queue_of_request_events_for_its_grace_only(
    sqlite: AsyncEngine, grace: float
) -> None:
    """While request events wait beyond the batch taken (a clump), the other work queued
    waits for them, for up to `grace` (they have a deadline, receipts and results only a
    store deadline): the writer is the clump's alone for that long, and no longer."""
    ran: list[str] = []

    def work(name: str, took: float = 0.0) -> Any:
        async def record(conn: AsyncConnection, *_: Any) -> str:
            time.sleep(took)  # noqa: ASYNC251 (a batch's work blocks the loop: as it does)
            ran.append(name)
            return name

        return record

    group = GroupCommit(sqlite, grace=grace)
    receipt = asyncio.create_task(group.run(work("receipt")))
    requests = [group.run_primed(work(f"request-{n}", 0.001)) for n in range(2 * BATCH)]
    await asyncio.gather(receipt, *requests)
    await group.close()
    if grace > 2 * BATCH * 0.001:
        assert ran.index("receipt") == 2 * BATCH, "not before the clump's request events"
    else:  # overdue after the first batch (BATCH works of 1 ms each)
        assert BATCH < ran.index("receipt") < 2 * BATCH


def test_the_apps_others_wait_behind_a_clump_for_a_share_of_their_store_deadline(
    tmp_path: Path,
) -> None:
    """The composition root gives the group commit its grace from the store deadline (a
    receipt or result stored later than that is spooled): a share of it, whatever it is."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    for deadline_ms in (2000, 600):
        runtime = build_runtime(make_settings(url, tmp_path, store_deadline_ms=deadline_ms))
        group = runtime.intake._decider.scope.group
        assert isinstance(group, GroupCommit)
        assert group.grace == pytest.approx(deadline_ms / 1000 * OTHERS_GRACE)
        assert 0.0 < group.grace < deadline_ms / 1000 / 2
