"""Backtests in the store: the job rows (at most one running, held by a renewed lease) and the
stored history a backtest replays, read in pages in time order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, literal, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import backtests, verifications

RUNNING = "running"
LOST = "its runner stopped before finishing (lease expired)"


@dataclass(frozen=True, slots=True)
class BacktestRecord:
    """One backtest row; `result` is None in listings and until it is done."""

    id: int
    status: str
    policy: dict[str, Any]
    since: datetime
    until: datetime
    bucket_seconds: int
    created_at: datetime
    created_by: str | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    progress: float
    result: dict[str, Any] | None
    error: str | None


_JOB_COLUMNS = [backtests.c[f.name] for f in fields(BacktestRecord)]
_SUMMARY_COLUMNS = [c for c in _JOB_COLUMNS if c.name not in ("result", "policy")]


@dataclass(slots=True)
class StoredAttempt:
    """A stored request event as a backtest replays it: its facts, what live answered, and
    how it ended (`result_at`: when its last result arrived). Not frozen: a frozen
    dataclass's init sets each of its 20 fields through object.__setattr__ (6 us a row
    against 1 us; a replay makes a million)."""

    id: str
    requested_at: datetime
    method: str | None
    number: str | None
    country: str | None
    calling_code: int | None
    number_type: str | None
    number_valid: bool | None
    price_amount: float | None
    price_currency: str | None
    rate_amount: float | None
    rate_currency: str | None
    reference: str | None
    custom: str | None
    app_key: str | None
    action: str | None
    reason: str | None
    rule_name: str | None
    status: str | None
    result_at: datetime | None


_ATTEMPT_COLUMNS = [verifications.c[f.name] for f in fields(StoredAttempt)]


async def expire_lost(conn: AsyncConnection, *, now: datetime) -> None:
    """Mark failed a running backtest whose runner stopped renewing its lease."""
    await conn.execute(
        update(backtests)
        .where(backtests.c.status == RUNNING, backtests.c.lease_expires_at < now)
        .values(status="failed", error=LOST, finished_at=now, lease_expires_at=None)
    )


async def insert_running(
    conn: AsyncConnection,
    *,
    policy: dict[str, Any],
    since: datetime,
    until: datetime,
    bucket_seconds: int,
    now: datetime,
    by: str | None,
    lease_until: datetime,
) -> int | None:
    """A new running backtest, holding the lease; None if another one is running."""
    await expire_lost(conn, now=now)
    values = {
        "status": RUNNING,
        "policy": policy,
        "since": since,
        "until": until,
        "bucket_seconds": bucket_seconds,
        "created_at": now,
        "created_by": by,
        "started_at": now,
        "lease_expires_at": lease_until,
        "cancel_requested": False,
        "progress": 0.0,
    }
    try:
        async with conn.begin_nested():
            inserted = await conn.execute(
                insert(backtests).values(values).returning(backtests.c.id)
            )
            return int(inserted.scalar_one())
    except IntegrityError:
        return None


async def get(conn: AsyncConnection, backtest_id: int) -> BacktestRecord | None:
    row = (await conn.execute(select(*_JOB_COLUMNS).where(backtests.c.id == backtest_id))).first()
    return None if row is None else BacktestRecord(*row)


async def recent(conn: AsyncConnection, *, limit: int) -> list[BacktestRecord]:
    """The newest backtests first, without their policy or result."""
    stmt = select(*_SUMMARY_COLUMNS).order_by(backtests.c.id.desc()).limit(limit)
    rows = (await conn.execute(stmt)).mappings()
    return [BacktestRecord(**{**row, "policy": {}, "result": None}) for row in rows]


async def heartbeat(
    conn: AsyncConnection, backtest_id: int, *, progress: float, lease_until: datetime
) -> bool:
    """Renew the lease and record progress; True if the run should stop (cancel asked, or the
    row is no longer running)."""
    stmt = (
        update(backtests)
        .where(backtests.c.id == backtest_id, backtests.c.status == RUNNING)
        .values(progress=progress, lease_expires_at=lease_until)
        .returning(backtests.c.cancel_requested)
    )
    cancel = (await conn.execute(stmt)).scalar_one_or_none()
    return cancel is None or bool(cancel)


async def renew(conn: AsyncConnection, backtest_id: int, *, lease_until: datetime) -> None:
    """Extend a running backtest's lease (its supervisor does while its process lives)."""
    await conn.execute(
        update(backtests)
        .where(backtests.c.id == backtest_id, backtests.c.status == RUNNING)
        .values(lease_expires_at=lease_until)
    )


async def finish(
    conn: AsyncConnection,
    backtest_id: int,
    *,
    status: str,
    now: datetime,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """End a running backtest (a finished one is left as it is) and release the lease."""
    values: dict[str, Any] = {"status": status, "finished_at": now, "lease_expires_at": None}
    if result is not None:
        values |= {"result": result, "progress": 1.0}
    if error is not None:
        values["error"] = error
    await conn.execute(
        update(backtests)
        .where(backtests.c.id == backtest_id, backtests.c.status == RUNNING)
        .values(values)
    )


async def request_cancel(conn: AsyncConnection, backtest_id: int, *, now: datetime) -> None:
    """Ask the runner to stop; a run whose runner is gone is cancelled at once."""
    running = and_(backtests.c.id == backtest_id, backtests.c.status == RUNNING)
    await conn.execute(update(backtests).where(running).values(cancel_requested=True))
    await conn.execute(
        update(backtests)
        .where(running, backtests.c.lease_expires_at < now)
        .values(status="cancelled", finished_at=now, lease_expires_at=None)
    )


async def attempts_page(
    conn: AsyncConnection,
    *,
    start: datetime,
    until: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[StoredAttempt]:
    """Up to `limit` request events in [start, until), in (requested_at, id) order, after the
    key `after` (keyset paging on ix_verifications_requested_at_id). On PostgreSQL the page
    is read through the driver (asyncpg returns these columns as the ORM would: floats, and
    aware UTC times), without SQLAlchemy's per-row processing (a third of a replay's CPU)."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg":
        return await _attempts_page_asyncpg(conn, start, until, after, limit)
    at, vid = verifications.c.requested_at, verifications.c.id
    stmt = select(*_ATTEMPT_COLUMNS).where(at >= start, at < until)
    if after is not None:
        last_at, last_id = after
        stmt = stmt.where(tuple_(at, vid) > tuple_(literal(last_at, at.type), literal(last_id)))
    rows = await conn.execute(stmt.order_by(at, vid).limit(limit))
    return [StoredAttempt(*row) for row in rows]


# The table's own column names, no input.
_COLUMN_LIST = ", ".join(column.name for column in _ATTEMPT_COLUMNS)
_PAGE_SQL = (
    "SELECT " + _COLUMN_LIST + " FROM verifications"  # noqa: S608
    " WHERE requested_at >= $1 AND requested_at < $2 {after}"
    " ORDER BY requested_at, id LIMIT $3"
)
_FIRST_PAGE = _PAGE_SQL.format(after="")
_NEXT_PAGE = _PAGE_SQL.format(after="AND (requested_at, id) > ($4, $5)")


async def _attempts_page_asyncpg(
    conn: AsyncConnection,
    start: datetime,
    until: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[StoredAttempt]:
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if after is None:
        records = await driver.fetch(_FIRST_PAGE, start, until, limit)
    else:
        records = await driver.fetch(_NEXT_PAGE, start, until, limit, *after)
    make = StoredAttempt
    return [make(*record) for record in records]
