"""A group commit's deferred and carried writes (store/group_commit.py): a decision's
verification row and shadow matches wait for one executemany per batch, its settle rides on
the next counter statement — and nothing reads around them or loses them."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.main import create_app
from app.sinch import samples
from app.store import group_commit
from app.store.base import create_engine
from app.store.group_commit import GroupCommit
from app.store.thread_connection import write_later
from tests.conftest import make_settings
from tests.services.test_velocity import ALLOWED_LIMIT, NUMBER_LIMIT, _install, _policy
from tests.support import SinchSender

ADD_PARENT = text("INSERT INTO parent VALUES (:id)")
ADD_CHILD = text("INSERT INTO child VALUES (:id, :p)")


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await conn.execute(
            text("CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id))")
        )
    yield engine
    await engine.dispose()


@contextmanager
def statements() -> Iterator[Counter[str]]:
    """Statements sent through any SQLAlchemy engine while the block runs (an executemany
    is one), by kind."""
    seen: Counter[str] = Counter()

    def before(_c: Any, _cur: Any, sql: str, _p: Any, _ctx: Any, many: bool) -> None:
        seen["executemany" if many else "execute"] += 1

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


@pytest.fixture(autouse=True)
def _batches_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count statements per work in a batch: batches sized by what works took
    (group_commit.SLICE, tests/store/test_group_commit.py) would make that depend on the
    machine's speed. Here BATCH alone bounds them."""
    monkeypatch.setattr(group_commit, "SLICE", float("inf"))


async def _ids(engine: AsyncEngine, table: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT id FROM {table} ORDER BY id"))
        return [int(row[0]) for row in rows]


async def test_a_batchs_deferred_writes_are_one_executemany(sqlite: AsyncEngine) -> None:
    sizes: list[int] = []
    group = GroupCommit(sqlite, on_batch=lambda size, *_: sizes.append(size))

    async def add(conn: AsyncConnection, n: int) -> int:
        await write_later(conn, ADD_PARENT, {"id": n})
        return n

    with statements() as seen:
        done = await asyncio.gather(*(group.run(lambda c, n=n: add(c, n)) for n in range(40)))
    await group.close()
    assert done == list(range(40))
    assert await _ids(sqlite, "parent") == list(range(40)), "stored, at the commit"
    assert seen["executemany"] == len(sizes) < 40, "one executemany per batch"


async def test_a_read_in_the_batch_sees_the_writes_deferred_before_it(
    sqlite: AsyncEngine,
) -> None:
    group = GroupCommit(sqlite)

    async def add(conn: AsyncConnection, n: int) -> None:
        await write_later(conn, ADD_PARENT, {"id": n})

    async def count(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT count(*) FROM parent"))).scalar_one())

    outcomes = await asyncio.gather(
        group.run(lambda c: add(c, 1)),
        group.run(lambda c: add(c, 2)),
        group.run(count),
        group.run(lambda c: add(c, 3)),
        group.run(count),
    )
    await group.close()
    assert outcomes[2] == 2 and outcomes[4] == 3
    assert await _ids(sqlite, "parent") == [1, 2, 3]


async def test_a_deferred_write_that_fails_fails_its_own_work_alone(sqlite: AsyncEngine) -> None:
    """It fails where the batch's deferred writes run (its commit): the batch runs again,
    each work's deferred writes run at its end in its own savepoint."""
    group = GroupCommit(sqlite)
    async with sqlite.begin() as conn:
        await conn.execute(ADD_PARENT, {"id": 1})

    async def child(conn: AsyncConnection, n: int, parent: int) -> int:
        await write_later(conn, ADD_CHILD, {"id": n, "p": parent})
        return n

    outcomes = await asyncio.gather(
        group.run(lambda c: child(c, 10, 1)),
        group.run(lambda c: child(c, 11, 999)),  # no such parent
        group.run(lambda c: child(c, 12, 1)),
        return_exceptions=True,
    )
    await group.close()
    assert outcomes[0] == 10 and outcomes[2] == 12
    assert isinstance(outcomes[1], IntegrityError)
    assert await _ids(sqlite, "child") == [10, 12]


async def test_a_work_failing_after_it_deferred_a_write_leaves_nothing(
    sqlite: AsyncEngine,
) -> None:
    group = GroupCommit(sqlite)

    async def fails(conn: AsyncConnection) -> None:
        await write_later(conn, ADD_PARENT, {"id": 2})
        raise ValueError("fails after deferring a write")

    async def add(conn: AsyncConnection, n: int) -> None:
        await write_later(conn, ADD_PARENT, {"id": n})

    outcomes = await asyncio.gather(
        group.run(lambda c: add(c, 1)),
        group.run(fails),
        group.run(lambda c: add(c, 3)),
        return_exceptions=True,
    )
    await group.close()
    assert isinstance(outcomes[1], ValueError)
    assert await _ids(sqlite, "parent") == [1, 3]


async def _app_burst(
    tmp_path: Path, sqlite_template: Path, events: list[dict[str, Any]]
) -> tuple[list[Any], Counter[str], float, tuple[Any, ...]]:
    """`events` at once through the app on SQLite under the velocity policy; the responses,
    the statements sent meanwhile, the batches, and the counters' rows after."""
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
            await sender.post(samples.request_event(number="+46701234567"))  # compiles it
            metrics = app.state.runtime.metrics.registry
            before = metrics.get_sample_value("verifyguard_decision_batch_size_count") or 0.0
            with statements() as seen:
                responses = await asyncio.gather(*(sender.post(e) for e in events))
            batches = metrics.get_sample_value("verifyguard_decision_batch_size_count") or 0.0
            async with app.state.runtime.engine.connect() as conn:
                pending = await conn.execute(
                    text("SELECT sum(pending), sum(pending_spend_micros) FROM counters")
                )
                left = tuple(pending.one())
    return responses, seen, batches - before, left


async def test_a_batch_sends_half_the_statements_and_loses_no_settle(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """A decision in a batch: its count (carrying the settle of the decision before it),
    its window read, its inbox claim; its verification row and shadow matches go in the
    batch's executemany. The last settle of a batch is written before its commit: nothing
    is left pending once every attempt is decided."""
    numbers = [f"+4670{n}" for n in random.sample(range(1_000_000, 9_999_999), 40)]
    events = [samples.request_event(number=n) for n in numbers for _ in range(2)]
    random.shuffle(events)
    responses, seen, batches, left = await _app_burst(tmp_path, sqlite_template, events)
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["action"] for r in responses} == {"allow"}
    assert batches < len(events), "the burst was not batched"
    sent = seen["execute"] + seen["executemany"]
    assert sent / len(events) < 3.6, seen  # 6.1 when each write was a statement
    assert seen["executemany"] <= 2 * batches
    assert left == (0, 0), "a settle was lost"


async def test_a_redelivery_in_the_same_batch_gets_the_answer_stored_before_it(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """The first delivery's verification row is deferred; the redelivery's read of the
    stored answer runs it first, so it answers as the first did (not the fallback)."""
    numbers = [f"+4670{n}" for n in random.sample(range(1_000_000, 9_999_999), 30)]
    events = [samples.request_event(number=n) for n in numbers]
    twice = [e for e in events for _ in range(2)]
    responses, _, batches, left = await _app_burst(tmp_path, sqlite_template, twice)
    assert batches < len(twice), "the burst was not batched"
    assert [r.json()["action"] for r in responses] == ["allow"] * len(twice)
    assert left == (0, 0)


async def test_a_batchs_receipts_and_results_write_their_rows_in_executemanys(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Receipts and results that arrive together: each claims its inbox row; their
    verification rows go in one executemany per kind and batch (not a statement each),
    and every row is written (a result read back by a later one in the batch sees it)."""
    numbers = [f"+4670{n}" for n in random.sample(range(1_000_000, 9_999_999), 30)]
    requests = [samples.request_event(number=n) for n in numbers]
    receipts = [
        samples.delivered_event(verification_id=e["id"], number=e["identity"]["endpoint"])
        for e in requests
    ]
    results = [
        samples.result_event(
            verification_id=e["id"], number=e["identity"]["endpoint"], status="FAIL"
        )
        for e in requests
    ]
    shutil.copy(sqlite_template, tmp_path / "app.db")
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", tmp_path)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://verifyguard.test") as http:
            sender = SinchSender(http, path=settings.callback_path)
            for request in requests:
                await sender.post(request)
            with statements() as seen:
                answers = await asyncio.gather(*(sender.post(e) for e in receipts + results))
            async with app.state.runtime.engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT status, sms_result, action FROM verifications")
                )
                stored = Counter(tuple(row) for row in rows)
    assert {r.status_code for r in answers} == {200}
    assert stored == Counter({("FAIL", "Successful", "allow"): len(requests)})
    # Each a claim, a result also its verification's keys (it reads the rows deferred
    # before it: they run then); 2.5 a callback when each row was a statement of its own.
    sent = seen["execute"] + seen["executemany"]
    assert sent / len(receipts + results) < 2.1, seen
