"""Declarative base, naming convention, engine and session factory."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolResetState
from sqlalchemy.util import await_only

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


BUSY_TIMEOUT_MS = 5000  # SQLite: how long a statement waits for another connection's lock


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    autocommit: bool = False,
    connect_timeout: float | None = None,
) -> AsyncEngine:
    """An engine tuned per backend: SQLite gets WAL, a busy timeout and a single writer.

    `autocommit` (PostgreSQL only) gives a separate pool whose statements commit one by one,
    for counters that must not hold row locks across a request. `connect_timeout` (seconds)
    makes a connection attempt to an unreachable server fail fast instead of after 60 s.
    """
    if url.startswith("sqlite"):
        # One connection: SQLite has one writer anyway, and a queue in asyncio beats
        # threads fighting over the file lock with second-long busy waits. Group commit
        # runs a batch's statements on the event loop's thread between aiosqlite's calls on
        # its own (store/group_commit.py): a checkout is exclusive, and its holder awaits
        # each call, so the two threads never use the connection at once.
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
            pool_reset_on_return=None,  # _rollback_if_open instead
            connect_args={"check_same_thread": False},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _rollback_if_open)
        return engine
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    connect_args: dict[str, Any] = {}
    if connect_timeout is not None:
        connect_args["timeout"] = connect_timeout
    if autocommit:
        # The request path's prepared statements are planned once per connection. Left to
        # choose, PostgreSQL re-planned the counting statement (a CTE of an upsert and a
        # per-key LATERAL read) at every execution: its custom plans looked a little
        # cheaper than the generic one, and planning it cost more than running it.
        # tests/store/test_generic_plans.py checks that each generic plan reads by key.
        connect_args["server_settings"] = {"plan_cache_mode": "force_generic_plan"}
    if connect_args:
        options["connect_args"] = connect_args
    # A fixed pool: overflow connections would be opened and closed under load, and a
    # connection costs far more than a short wait in the pool's queue.
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=10, **options
    )
    event.listen(engine.sync_engine, "connect", _json_takes_bytes)
    return engine


def create_reader(engine: AsyncEngine) -> AsyncEngine:
    """The engine background jobs and the console's pages read through: `engine` itself,
    except on a SQLite file.

    There the app holds one connection (above), and the request path's group commit runs on
    it (store/group_commit.py): a background job's reads on it held every decision back for
    as long as they took. The baseline refresh, reading 30 s of a pumping attack's claims,
    held it 0.33 s on a fast machine and about a second on a slow one, and every request
    event in that time was answered by the fallback. The reader is a second connection:
    WAL lets it read while the writer writes, neither waiting for the other. Each of its
    transactions is one snapshot (BEGIN at the first statement, not one per statement as
    the sqlite3 module would), and it cannot write (`query_only`). An in-memory database
    is not shared between connections: it keeps `engine`.

    A long snapshot is caught up after (`_release_snapshot`): while one is open the WAL cannot be
    copied back past what it sees, and the writer's next automatic checkpoint copied all
    that piled up, inside a batch's COMMIT. The baseline refresh's reads under a burst held
    theirs 2-6 s, and the COMMIT after took 200-230 ms: the stall check shed the requests
    behind it, real users' (docs/operations.md, "Background work waits out a burst").
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return engine
    if url.query.get("mode") == "memory":
        return engine
    reader = create_async_engine(
        url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=2,
        max_overflow=0,
        pool_timeout=30,
        pool_reset_on_return=None,  # _release_snapshot instead
        connect_args={"check_same_thread": False},
    )
    event.listen(reader.sync_engine, "connect", _sqlite_reader_pragmas)
    event.listen(reader.sync_engine, "begin", _begin_snapshot)
    event.listen(reader.sync_engine, "reset", _release_snapshot)
    return reader


def _sqlite_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module opens a transaction only before a write: none here, so each
    # SELECT would see its own snapshot. `_begin_snapshot` opens one instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _begin_snapshot(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")
    conn.connection.info[_SNAPSHOT_AT] = time.monotonic()


_SNAPSHOT_AT = "verifyguard_snapshot_at"
# Seconds a reader's snapshot lasts from which its connection catches the WAL up once the
# snapshot is released: about what the writer logs past its automatic checkpoint (1,000
# pages) at a few hundred request events a second; shorter ones leave it little to copy.
CATCH_UP_AFTER = 0.2


def _release_snapshot(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """A reader's connection checked in: its snapshot's ROLLBACK (the pool's reset, which
    runs after its listeners, is off for the reader); after a long snapshot, in the same hop
    to its thread, a PASSIVE checkpoint that copies back what the WAL kept for it. PASSIVE
    takes no lock the writer waits for, and the writer's own checkpoint, finding one
    running, skips its turn instead of copying it all inside a COMMIT. In one hop: back on
    the event loop between the two, a batch's COMMIT came first and copied it all. A
    connection discarded outside the event loop (`asyncio_safe` False) is not touched, as
    by default."""
    began = record.info.pop(_SNAPSHOT_AT, None)
    if not state.asyncio_safe:
        return
    driver = dbapi_connection.driver_connection
    if began is not None and time.monotonic() - began >= CATCH_UP_AFTER:
        # aiosqlite's own queue to its thread (as store/group_commit.py `_run_on_thread`).
        await_only(driver._execute(_roll_back_and_catch_up, driver._conn))
    elif driver.in_transaction:
        dbapi_connection.rollback()


def _roll_back_and_catch_up(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.rollback()
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _json_takes_bytes(dbapi_connection: Any, _record: Any) -> None:
    """asyncpg's `json` codec as SQLAlchemy's dialect sets it (binary format: the text's
    UTF-8), but its encoder also takes JSON already encoded as bytes and sends them as they
    are: the request path's store batches send pydantic's bytes, where decoding them to a
    str only for `str.encode` to encode them again cost ~76k instructions a decision (the
    decision document holds non-ASCII, so neither way is a plain copy). A str is encoded as
    before; results decode as SQLAlchemy's do (`json.loads`, the dialect's default, which
    reads UTF-8 bytes itself). Runs after the dialect's own setup (a listener added later)."""
    dbapi_connection.run_async(
        lambda conn: conn.set_type_codec(
            "json", encoder=_json_bytes, decoder=json.loads, schema="pg_catalog", format="binary"
        )
    )


def _json_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _rollback_if_open(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """The pool's reset of a connection checked in, on SQLite: a ROLLBACK only if a
    transaction is open. The default reset rolls back at every check-in, and under aiosqlite
    each is a hop to the connection's thread and back to the event loop: for a group commit
    batch of one (store/group_commit.py), which checks the connection in after its COMMIT,
    that was one of its two hops. SQLite knows whether a transaction is open (autocommit
    mode, read here beside the thread: a checkout is exclusive, and its holder awaited each
    call), so nothing else changes: an open one is still rolled back. A connection
    discarded outside the event loop (`asyncio_safe` False) is not touched, as by default."""
    if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
