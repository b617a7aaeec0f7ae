"""The hot path's prepared statements keep reading counters by key as history grows.

asyncpg prepares each statement once per connection, and after five executions PostgreSQL
may switch to a generic plan, chosen without the parameters' values. Such a plan for
`key = ANY($1) AND bucket …`, made from statistics taken while the table was small, picked
the bucket index, so every attempt read all keys' rows of its window. Here the statements a
real request event runs are captured, then planned generically in that state: none may
read counters through the bucket index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from app.sinch import samples
from app.store import changes, pg_batch_store
from app.store.counter_model import CounterDeltas
from app.store.counters import SqlCounters, counters
from app.store.pg_batch_store import StoreItem
from tests.conftest import make_settings
from tests.engines import renew_connections
from tests.store.test_store_statement import CLAIM, REQUEST
from tests.support import SinchSender

TOKEN = "generic-plans-admin-token"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


async def _history(engine: AsyncEngine, now: datetime) -> None:
    """A young, busy table: analysed (by autovacuum) while it held a few dozen rows, then
    30,000 numbers counted within the current bucket."""
    current = SqlCounters(60).clock.bucket(now)

    def rows(first: int, count: int) -> list[dict[str, Any]]:
        return [
            {"key": f"number:+4670{k:07d}", "bucket": current, "attempts": 1}
            for k in range(first, first + count)
        ]

    async with engine.begin() as conn:
        await conn.execute(insert(counters), rows(0, 60))
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE counters"))
    async with engine.begin() as conn:
        for start in range(60, 30_060, 5_000):
            await conn.execute(insert(counters), rows(start, 5_000))


def _literal(value: Any, kind: str = "") -> str:
    """`value` as a literal of the parameter's type `kind` (JSON is sent encoded, as bytes)."""
    if isinstance(value, bytes) and kind in ("json", "jsonb"):
        return "'" + value.decode().replace("'", "''") + "'"
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):  # untyped: the statement's cast gives its element type
        elements = ",".join(_element(v) for v in value)
        return "'{" + elements.replace("'", "''") + "}'"
    if isinstance(value, bytes):
        return "'\\x" + value.hex() + "'::bytea"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    return "'" + str(value).replace("'", "''") + "'"


def _element(value: Any) -> str:
    """An element of an array literal, quoted."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        raw = "\\x" + value.hex()
    elif isinstance(value, datetime):
        raw = value.isoformat()
    else:
        raw = str(value).lower() if isinstance(value, bool) else str(value)
    return '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, bootstrap_token=TOKEN)


def _capture(*engines: AsyncEngine, table: str = "counters") -> list[tuple[str, tuple[Any, ...]]]:
    """Statements on `table` run by new connections of these engines (query, args)."""
    captured: list[tuple[str, tuple[Any, ...]]] = []

    def capture(record: Any) -> None:
        if table in record.query:
            captured.append((record.query, record.args))

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(capture)

    for engine in engines:
        event.listen(engine.sync_engine, "connect", on_connect)
    return captured


async def _generic_plans(
    engine: AsyncEngine, statements: list[tuple[str, tuple[Any, ...]]], table: str = "counters"
) -> None:
    async with engine.connect() as conn:
        apg = (await conn.get_raw_connection()).driver_connection
        await apg.execute("SET plan_cache_mode = force_generic_plan")
        for query, args in list(statements):  # this connection may be capturing too
            await apg.execute(f"PREPARE probe AS {query}")
            kinds = [t.name for t in (await apg.prepare(query)).get_parameters()]
            literals = f"({','.join(map(_literal, args, kinds))})" if args else ""
            rows = await apg.fetch(f"EXPLAIN EXECUTE probe{literals}")
            await apg.execute("DEALLOCATE probe")
            plan = "\n".join(r[0] for r in rows)
            assert "ix_counters_bucket" not in plan, plan
            assert f"Seq Scan on {table}" not in plan, plan
            assert "ix_counter_hours_hour" not in plan, plan
            assert "Seq Scan on counter_hours" not in plan, plan


async def test_counter_statements_read_by_key_under_a_generic_plan(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    await _history(engine, datetime.now(UTC))
    captured = _capture(runtime.counter_engine)
    await runtime.held.close()
    await renew_connections(runtime.counter_engine)  # new connections, with the logger
    # The starter policy counts number, range and country and holds the range (allowed-only).
    response = await sinch.post(samples.request_event(number="+46701234567", price=0.05))
    assert response.status_code == 200 and response.json()["action"] == "allow"
    assert captured, "the counting statement"
    assert not any("INSERT INTO callbacks" in q for q, _ in captured), (
        "an allowed one settles nothing"
    )
    # A denied attempt's settle is the store statement's: take the range's hold back.
    bucket = SqlCounters(60).clock.bucket(datetime.now(UTC))
    settle = CounterDeltas(("range-3:+46701234",), bucket, {"allowed": -1})
    async with runtime.held.lend() as conn:
        await pg_batch_store.store_batch(conn, [StoreItem(CLAIM, REQUEST, [], settle)])
    assert any("INSERT INTO callbacks" in q for q, _ in captured), "the store statement"
    await _generic_plans(engine, captured)


async def test_a_dry_run_reads_counters_by_key_under_a_generic_plan(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    await _history(engine, datetime.now(UTC))
    captured = _capture(runtime.engine)
    await renew_connections(runtime.engine)
    event_ = samples.request_event(number="+46701234567", price=0.05)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = await client.post("/admin/evaluate", json={"event": event_}, headers=headers)
    assert response.status_code == 200 and response.json()["action"] == "allow"
    assert captured, "the dry run read the counters"
    await _generic_plans(engine, captured)


async def test_request_statements_are_planned_once_per_connection(
    client: AsyncClient, sinch: SinchSender
) -> None:
    """Left to choose, PostgreSQL re-planned the counting statement at every execution (its
    custom plans looked a little cheaper), and planning it cost more than running it. The
    counting connections use the generic plans checked above, every time."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    for n in range(8):  # more than the 5 custom plans PostgreSQL tries before choosing
        event_ = samples.request_event(number=f"+4670123456{n}", price=0.05)
        assert (await sinch.post(event_)).status_code == 200
    plans = []
    for _ in range(runtime.held.size):
        async with runtime.held.lend() as conn:
            rows = await conn.execute(
                text(
                    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE 'WITH %'"
                )
            )
            plans += [tuple(row) for row in rows]
    counting = [p for p in plans if "INSERT INTO counters" in p[0].split(")", 1)[0]]
    storing = [p for p in plans if "INSERT INTO callbacks" in p[0]]
    assert counting and storing
    assert sum(p[1] for p in counting) >= 8 and sum(p[1] for p in storing) >= 8
    assert all(p[2] == 0 for p in plans), plans


async def test_counter_statements_read_by_key_on_a_fresh_table(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    """A fresh database (make bench's every phase; a new deployment): the counters table
    was never analysed and holds a few rows when the held connections plan their generic
    plans. Both indexes then looked as cheap, and the per-key read of the older buckets went
    through the bucket index, reading every key's rows of the window as the table grew
    (PostgreSQL's CPU doubled in about 1 of 4 bench phases: those that crossed a minute)."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    captured = _capture(runtime.counter_engine, runtime.engine)
    await runtime.held.close()
    await renew_connections(runtime.counter_engine)
    await renew_connections(runtime.engine)
    # The first loads the policy (one connection of its own); the second is group-committed.
    for number in ("+46701234567", "+46701234569"):
        response = await sinch.post(samples.request_event(number=number, price=0.05))
        assert response.status_code == 200 and response.json()["action"] == "allow"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    event_ = samples.request_event(number="+46701234568", price=0.05)
    response = await client.post("/admin/evaluate", json={"event": event_}, headers=headers)
    assert response.status_code == 200
    async with engine.connect() as conn:
        analysed = await conn.scalar(
            text("SELECT reltuples FROM pg_class WHERE relname = 'counters'")
        )
    assert analysed is not None and analysed < 0, "the table must never have been analysed"
    assert len(captured) >= 3, "the counting, store and dry-run statements"
    await _generic_plans(engine, captured)


async def test_outcome_statements_read_verifications_by_id_on_a_fresh_table(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    """The result batch's statement reads what each verification was before it (its keys,
    its status). Planned generically on a fresh, never-analysed table (the pool's
    connections do so within the first seconds of a new deployment), its join to the
    results went through a hash of a sequential scan of every verification, a plan kept as
    the table grew: each batch of results read the whole table (the soak's rise from its
    first minute, bench/soak.py --profile)."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    captured = _capture(runtime.engine, table="verifications")
    await renew_connections(runtime.engine)
    request = samples.request_event(number="+46701234567", price=0.05)
    response = await sinch.post(request)
    assert response.status_code == 200 and response.json()["action"] == "allow"
    ident = request["id"]
    for event_ in (
        samples.delivered_event(verification_id=ident, number="+46701234567"),
        samples.result_event(verification_id=ident, number="+46701234567"),
    ):
        assert (await sinch.post(event_)).status_code == 200
    async with engine.connect() as conn:
        analysed = await conn.scalar(
            text("SELECT reltuples FROM pg_class WHERE relname = 'verifications'")
        )
    assert analysed is not None and analysed < 0, "the table must never have been analysed"
    assert any("unnest" in query for query, _ in captured), "the outcome batch's statements"
    await _generic_plans(engine, captured, table="verifications")


async def test_refresh_reads_new_claims_by_id_on_a_fresh_table(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    """The baseline refresh reads the inbox claims past its mark (store/changes.py) every
    30 s. Its `id > $1` reads, planned on a never-analysed table (a fresh database on a
    server without autovacuum, or before its first pass), scanned every callback stored,
    and each refresh read more of them than the last (bench/soak.py --profile: the
    `callbacks` sequential scans of each minute)."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    for n in range(3):
        event_ = samples.request_event(number=f"+4670123456{n}", price=0.05)
        assert (await sinch.post(event_)).status_code == 200
    captured = _capture(runtime.engine, table="callbacks")
    read = _capture(runtime.engine, table="FROM verifications")  # the changed ones
    await renew_connections(runtime.engine)

    def through_sqlalchemy(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM callbacks" in statement:  # the reads (asyncpg logs its own calls only)
            captured.append((statement, tuple(parameters)))

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", through_sqlalchemy)
    now = datetime.now(UTC)
    async with runtime.engine.connect() as conn:
        mark = await changes.start(conn, now)
        behind = changes.Mark(0, {})  # every claim new, and ids missing (read as gaps)
        found, _ = await changes.changes(conn, behind, [("country", None)], now)
    event.remove(runtime.engine.sync_engine, "before_cursor_execute", through_sqlalchemy)
    assert mark.last and found, "the claims were read"
    assert len(captured) >= 4, "the mark, the count, the ids present and the claims"
    async with engine.connect() as conn:
        analysed = await conn.scalar(
            text("SELECT reltuples FROM pg_class WHERE relname = 'callbacks'")
        )
    assert analysed is not None and analysed < 0, "the table must never have been analysed"
    await _generic_plans(engine, captured, table="callbacks")
    assert any("requested_at >=" in query for query, _ in read), "by request time"
    await _generic_plans(engine, read, table="verifications")
