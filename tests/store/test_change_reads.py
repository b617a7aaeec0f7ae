"""The baseline refresh's reads of what changed (store/changes.py) on PostgreSQL: each
verification its claims name is read once, by request time, not by a primary-key descent
per claim (scattered over a uuid index that outgrows shared_buffers), and a result hours
late is still found by id. Counted by the server (`pg_stat_get_xact_numscans`: the scans of each
index within the refresh's transaction), not timed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import changes
from app.store.base import create_engine
from tests.services.stored_history import request_in, result_in
from tests.store.test_baselines import NOW

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]
KEYS = [("number", None)]
NEW = 120  # verifications requested since the mark, each with a SUCCESSFUL result 2 s later


async def _index_scans(conn: AsyncConnection) -> dict[str, int]:
    """Scans of each index of `verifications` in this transaction, and its rows read."""
    fetched = await conn.scalar(
        text(
            "SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_xact_user_tables "
            "WHERE relname = 'verifications'"
        )
    )
    rows = await conn.execute(
        text(
            "SELECT c.relname, pg_stat_get_xact_numscans(c.oid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'verifications'::regclass"
        )
    )
    return {name: int(scans) for name, scans in rows} | {"rows read": int(fetched or 0)}


async def test_a_refresh_reads_each_changed_verification_once_by_request_time(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small spans: a verification's request and result claims fall in different ones.
    monkeypatch.setattr(changes, "CLAIM_CHUNK", 10)
    monkeypatch.setattr(changes, "SPAN_CHUNK", 10, raising=False)  # (old: CLAIM_CHUNK)
    engine = create_engine(database_url)
    late = str(uuid.uuid4())
    async with engine.begin() as conn:
        await request_in(conn, late, "+46709999999", at=NOW - timedelta(hours=3))
    async with engine.connect() as conn:
        mark = await changes.start(conn, NOW)
    idents = [str(uuid.uuid4()) for _ in range(NEW)]
    async with engine.begin() as conn:  # in time order, as the intake claims them
        for i, ident in enumerate(idents):
            at = NOW + timedelta(milliseconds=100 * i)
            await request_in(conn, ident, f"+4670{i:07d}", at=at)
            if i >= 20:  # the result of the request 2 s (20 requests) before
                done = NOW + timedelta(milliseconds=100 * (i - 20) + 2000)
                await result_in(conn, idents[i - 20], "SUCCESSFUL", at=done)
        await result_in(conn, late, "SUCCESSFUL", at=NOW + timedelta(seconds=5))
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        await conn.execute(text("SELECT 1"))  # the snapshot, before counting
        before = await _index_scans(conn)
        found, _ = await changes.changes(conn, mark, KEYS, NOW + timedelta(seconds=30))
        after = await _index_scans(conn)
    await engine.dispose()
    scans = {name: after[name] - before.get(name, 0) for name in after}
    by_change = {c.keys[0]: c for c in found}
    assert len(found) == NEW + 1
    assert sum(c.verified for c in found) == NEW - 20 + 1  # the last 20 not yet
    assert by_change["number:+46709999999"].verified, "the late result, read by id"
    assert not by_change["number:+46709999999"].attempt
    # Each verification read once (the old reads: twice, with its request's claims and
    # with its result's; on this small table a scan of all of them per span), by request
    # time; one primary-key scan, for the late result's.
    # Up to 2 more per planned statement: with statistics (an ANALYZE before this test),
    # the planner reads the index's first or last live row for a bound past the histogram
    # (get_actual_variable_range), which counts as a scan and a row fetched.
    assert NEW + 1 <= scans["rows read"] <= NEW + 1 + 4, scans
    assert scans["pk_verifications"] <= 1, scans
    assert scans["ix_verifications_requested_at_id"] >= 1, scans
