"""A batch's hot statements on the sqlite3 cursor (store/sqlite_statements.py): the same
rows stored as through SQLAlchemy, the same errors, and no SQLAlchemy execution each."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.services.resilience.errors import is_outage
from app.sinch import samples
from app.store import inbox
from app.store.group_commit import GroupCommit
from app.store.policy import policy_version
from app.store.rows import CallbackClaim, RequestRow, params
from app.store.tables import verifications
from app.store.thread_connection import ThreadConnection, drive
from tests.store import test_batch_writes as batch_writes
from tests.store.test_batch_writes import _app_burst, statements

CLAIM = CallbackClaim(
    received_at=datetime(2026, 12, 4, 21, 0, 1, 250_000, tzinfo=UTC),
    app_key="app",
    event="VerificationRequestEvent",
    verification_id="v-1",
    dedupe_key="VerificationRequestEvent:v-1",
    signature="sig",
    http_status=200,
    error_code=None,
    content_type="application/json",
    raw_body=b'{"id": "v-1"}',
)
NOW = CLAIM.received_at
REQUEST = RequestRow(
    id="v-1",
    created_at=NOW,
    shadow_deny=True,
    app_key="app",
    method="sms",
    number="+46701234567",
    country="SE",
    calling_code=46,
    number_type="MOBILE",
    number_valid=True,
    price_amount=0.0123,
    price_currency="EUR",
    rate_amount=None,
    rate_currency=None,
    reference="ref",
    custom=None,
    requested_at=NOW,
    action="allow",
    reason="default",
    decided_by="default",
    rule_id=None,
    rule_name=None,
    rule_revision=None,
    answer={"action": "allow", "sms": {"code": "ä"}},
    decided_at=NOW,
    decision_ms=1.234,
    decision={"action": "allow", "trace": [1, 2.5, None, "x"]},
)


def _stored(url: str, *, planned: bool) -> list[tuple[Any, ...]]:
    """The claim and its verification row stored through a batch's connection, as the
    database holds them (raw: no SQLAlchemy result processing)."""
    engine = create_engine(url)
    with engine.connect() as sync:
        conn = ThreadConnection(sync)
        if planned:
            claimed = drive(inbox.claim_callback(conn, CLAIM))  # type: ignore[arg-type]
        else:
            stmt = inbox.claim_statement("sqlite")  # what claim_callback runs
            claimed = sync.execute(stmt, params(CLAIM)).scalar_one_or_none()
        assert claimed == 1
        drive(inbox.upsert_request(conn, REQUEST, callback_id=claimed))  # type: ignore[arg-type]
        if planned:
            conn.flush()
        else:
            stmt = next(iter(conn._later))
            sync.execute(stmt, conn._later.pop(stmt))
        sync.commit()
        raw: Any = sync.connection.dbapi_connection
        rows = list(raw.execute("SELECT * FROM callbacks"))
        rows += list(raw.execute("SELECT * FROM verifications"))
    engine.dispose()
    return rows


def test_planned_statements_store_what_sqlalchemy_stores(
    tmp_path: Path, sqlite_template: Path
) -> None:
    for name in ("planned.db", "sqlalchemy.db"):
        shutil.copy(sqlite_template, tmp_path / name)
    planned = _stored(f"sqlite:///{tmp_path / 'planned.db'}", planned=True)
    through = _stored(f"sqlite:///{tmp_path / 'sqlalchemy.db'}", planned=False)
    assert planned == through
    assert len(planned) == 2


def test_a_planned_statement_fails_as_sqlalchemy_fails(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'e.db'}")
    stmt = text("INSERT INTO t (k) VALUES (:k)")
    with engine.connect() as sync:
        sync.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")
        conn = ThreadConnection(sync)
        conn.now(stmt, {"k": "a"})
        with pytest.raises(IntegrityError, match="UNIQUE"):
            conn.now(stmt, {"k": "a"})
    engine.dispose()


@contextmanager
def _with_executions() -> Iterator[Counter[str]]:
    """`statements()`, also counting those run through SQLAlchemy's execution
    (Connection.execute: an execution context each) as "through"."""
    with statements() as seen:

        def before(*_: Any) -> None:
            seen["through"] += 1

        event.listen(Connection, "before_execute", before)
        try:
            yield seen
        finally:
            event.remove(Connection, "before_execute", before)


async def test_a_batchs_decisions_skip_sqlalchemys_execution(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision's count, window read, inbox claim and verification row go to the cursor:
    SQLAlchemy executes only the batch's own statements (BEGIN, the policy version)."""
    numbers = [f"+4670{n}" for n in random.sample(range(1_000_000, 9_999_999), 40)]
    events = [samples.request_event(number=n) for n in numbers]
    monkeypatch.setattr(batch_writes, "statements", _with_executions)  # the burst's window
    responses, seen, batches, _ = await _app_burst(tmp_path, sqlite_template, events)
    assert {r.json()["action"] for r in responses} == {"allow"}
    assert batches < len(events), "the burst was not batched"
    assert seen["execute"] / len(events) > 2, seen  # the statements were sent, and counted
    assert seen["through"] / len(events) < 1, seen  # ~3.1 when each went through it


async def test_a_batchs_json_columns_read_back_as_given(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Through the group commit a decision's JSON is written by pydantic-core's encoder
    (compact, as on PostgreSQL) and reads back as it was given."""
    shutil.copy(sqlite_template, tmp_path / "j.db")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'j.db'}")
    group = GroupCommit(engine)

    async def store(conn: AsyncConnection) -> None:
        await inbox.upsert_request(conn, REQUEST, callback_id=await _claim(conn))

    await group.run(store)
    await group.close()
    async with engine.connect() as conn:
        found = (await conn.execute(select(verifications.c.answer, verifications.c.decision))).one()
        raw = await conn.exec_driver_sql("SELECT answer FROM verifications")
        text_stored = raw.scalar_one()
    await engine.dispose()
    assert (found.answer, found.decision) == (REQUEST.answer, REQUEST.decision)
    assert text_stored == '{"action":"allow","sms":{"code":"ä"}}'  # json.dumps: '{"action": …'


async def _claim(conn: AsyncConnection) -> int:
    claimed = await inbox.claim_callback(conn, CLAIM)
    assert claimed is not None
    return claimed


def test_a_planned_statement_on_a_closed_database_is_an_outage(tmp_path: Path) -> None:
    """As through SQLAlchemy: the error says the connection was lost (the breaker opens on
    it: services/resilience/errors.py), not a bare sqlite3 error."""
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    errors = []
    for planned in (True, False):
        with engine.connect() as sync:
            sync.connection.dbapi_connection.close()  # type: ignore[union-attr]
            run = ThreadConnection(sync).now if planned else sync.execute
            with pytest.raises(DBAPIError) as raised:
                run(text("SELECT :n"), {"n": 1})
            errors.append(raised.value)
    engine.dispose()
    assert [(type(e), e.connection_invalidated, is_outage(e)) for e in errors] == [
        (type(errors[1]), True, True)
    ] * 2


async def test_a_batchs_policy_version_is_read_on_the_cursor(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """The prologue every batch runs (a lone request's too): ~0.1 ms less per batch than
    through SQLAlchemy's execution, with the same version read."""
    shutil.copy(sqlite_template, tmp_path / "p.db")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    async with engine.connect() as conn:
        expected = int((await conn.execute(text("SELECT version FROM policy_state"))).scalar_one())
    group = GroupCommit(engine, prologue=policy_version)

    async def primed(conn: AsyncConnection, version: Any) -> Any:
        return version

    await group.run_primed(primed)  # the pool's connection, opened
    with _with_executions() as seen:
        versions = [await group.run_primed(primed) for _ in range(3)]
    await group.close()
    await engine.dispose()
    assert versions == [expected] * 3
    assert seen["execute"] == 6, seen  # BEGIN IMMEDIATE and the version, each still counted
    assert seen["through"] == 0, seen  # 3: the version through SQLAlchemy's execution
