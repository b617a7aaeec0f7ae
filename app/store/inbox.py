"""Writes of callback intake: the inbox row, the verification upserts, shadow matches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Text, TextClause, TypeDecorator, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter, Cast, ColumnElement

from app.store import counters, pg_fastpath, stats_rollup
from app.store.counter_model import CounterDeltas
from app.store.models import DEDUPE_DIGEST_PG
from app.store.rows import (
    CallbackClaim,
    DeliveryRow,
    MatchRow,
    RequestRow,
    ResultRow,
    VerificationKeys,
    columns,
    params,
)
from app.store.tables import callbacks, matches, verifications
from app.store.thread_connection import batch_connection, run_beside, write_later
from app.store.upsert import cached, upsert

PENDING = "PENDING"
_ADD_MATCH = insert(matches)
CLAIM_COLUMNS = columns(CallbackClaim)
REQUEST_COLUMNS = columns(RequestRow)
RESULT_COLUMNS = columns(ResultRow)
DELIVERY_COLUMNS = columns(DeliveryRow)


def claim_statement(dialect: str) -> TextClause:
    """The inbox claim's upsert on `dialect`: the dedupe key's unique index is on its digest
    on PostgreSQL (models.py), on the key elsewhere."""
    target = DEDUPE_DIGEST_PG if dialect == "postgresql" else "dedupe_key"
    return cached(
        ("claim", dialect),
        lambda: upsert(callbacks, CLAIM_COLUMNS, conflict=[target], returning=["id"]),
    )


async def claim_callback(conn: AsyncConnection, row: CallbackClaim) -> int | None:
    """Insert an inbox row; None when its dedupe key was already stored (a redelivery)."""
    stmt = claim_statement(conn.dialect.name)
    # In a batch ahead of the deferred writes: those never touch the inbox.
    result = await run_beside(conn, stmt, params(row))
    claimed: int | None = result.scalar_one_or_none()
    return claimed


async def add_callback(conn: AsyncConnection, row: CallbackClaim) -> None:
    """Insert an inbox row that has no dedupe key (rejected or unparseable bodies)."""
    await conn.execute(insert(callbacks).values(params(row)))


async def stored_answer(conn: AsyncConnection, verification_id: str) -> dict[str, Any] | None:
    if conn.dialect.name == "postgresql":
        return await pg_fastpath.stored_answer(conn, verification_id)
    stmt = select(verifications.c.answer).where(verifications.c.id == verification_id)
    value = (await conn.execute(stmt)).scalar_one_or_none()
    return value if isinstance(value, dict) else None


async def upsert_request(
    conn: AsyncConnection, row: RequestRow, *, callback_id: int, decision_json: bytes | None = None
) -> None:
    """Store a decided request, linked to its inbox row; a result that arrived first already
    made the row.

    `decision_json`: the row's `decision` already encoded (records.decision_json; then
    `row.decision` is not read), stored as it is (`EncodedJSON`): the JSON column's own
    binding would encode a dict again (on SQLite's request path a document built by
    model_dump and then encoded cost ~3.7 times the one-pass encoding). SQLite only: on
    PostgreSQL a text parameter is no `json` (its batches send the bytes through asyncpg's
    json codec instead: pg_batch_store.py)."""
    values = params(row)
    values["request_callback_id"] = callback_id
    if decision_json is None:
        stmt = cached("request", _request)
    else:
        stmt = cached("request encoded", lambda: _request().bindparams(_DECISION_ENCODED))
        values["decision"] = decision_json
    await write_later(conn, stmt, values)  # a batch's rows in one executemany


class EncodedJSON(TypeDecorator[bytes]):
    """JSON already encoded (UTF-8 bytes), bound as they are and cast to TEXT by SQLite (a
    cast of a BLOB reads its bytes as the database's UTF-8): the column holds the same text
    a str would have given, without decoding the bytes to a str for sqlite3 to encode it
    again (the decision's text holds non-ASCII: ~9 µs a decision)."""

    impl = Text
    cache_ok = True

    def bind_expression(self, bindvalue: BindParameter[bytes]) -> ColumnElement[bytes]:
        return cast("ColumnElement[bytes]", Cast(bindvalue, Text))  # the column's text


_DECISION_ENCODED = bindparam("decision", type_=EncodedJSON())


def _request() -> TextClause:
    update = {c: f"excluded.{c}" for c in REQUEST_COLUMNS if c not in ("id", "created_at")}
    return upsert(verifications, REQUEST_COLUMNS, conflict=["id"], update=update)


async def add_shadow_matches(conn: AsyncConnection, rows: Sequence[MatchRow]) -> None:
    if batch_connection(conn) is not None:
        for row in rows:
            await write_later(conn, _ADD_MATCH, params(row))  # a batch's in one executemany
    elif rows:
        await conn.execute(_ADD_MATCH, [params(row) for row in rows])


_KEYS = select(
    verifications.c.status,
    verifications.c.requested_at,
    verifications.c.number,
    verifications.c.country,
    verifications.c.calling_code,
    verifications.c.reference,
    verifications.c.app_key,
    verifications.c.method,
).where(verifications.c.id == bindparam("id"))


async def verification_keys(conn: AsyncConnection, verification_id: str) -> VerificationKeys | None:
    """What a result event needs of its verification: counter keys and current status
    (the statement built once: each result on SQLite's writer built it anew)."""
    found = (await conn.execute(_KEYS, {"id": verification_id})).mappings().one_or_none()
    return cast(VerificationKeys, dict(found)) if found is not None else None


def _result_update() -> dict[str, str]:
    """A late PENDING never overwrites a final status; what the request stored is kept."""
    current, new = verifications.name, "excluded"
    keep_final = f"{new}.status = '{PENDING}' AND {current}.status IS NOT NULL"
    update = {
        name: f"CASE WHEN {keep_final} THEN {current}.{name} ELSE {new}.{name} END"
        for name in ("status", "status_reason", "status_source", "result_at")
    }
    for name in ("method", "number", "reference", "custom"):
        update[name] = (
            f"CASE WHEN {current}.{name} IS NULL THEN {new}.{name} ELSE {current}.{name} END"
        )
    return update


async def upsert_result(conn: AsyncConnection, row: ResultRow) -> None:
    """Record a result; a late PENDING never overwrites a final status.

    Built once (a dialect insert with its CASEs compiled anew on every call: most of a
    result's CPU on SQLite's writer); on a batch's connection deferred (`write_later`:
    what reads the row back — the next result's `verification_keys` — runs it first)."""
    stmt = cached(
        "result",
        lambda: upsert(verifications, RESULT_COLUMNS, conflict=["id"], update=_result_update()),
    )
    await write_later(conn, stmt, params(row))


async def upsert_delivery(conn: AsyncConnection, row: DeliveryRow) -> None:
    """Record an SMS delivery receipt (built once, deferred: as `upsert_result`)."""
    update = {name: f"excluded.{name}" for name in ("sms_result", "sms_delivered_at")}
    stmt = cached(
        "delivery",
        lambda: upsert(verifications, DELIVERY_COLUMNS, conflict=["id"], update=update),
    )
    await write_later(conn, stmt, params(row))


async def store_decision(
    conn: AsyncConnection,
    *,
    claim: CallbackClaim,
    verification: RequestRow,
    shadow: Sequence[MatchRow],
    settle: CounterDeltas | None = None,
    decision_json: bytes | None = None,
) -> int | None:
    """Claim the inbox row and store the decided verification with its shadow matches, and
    add `settle` to its counters (only if claimed; on PostgreSQL in the same statement).

    Returns the inbox id, or None for a redelivery (nothing written). On PostgreSQL this is
    one atomic statement; elsewhere, statements inside the caller's transaction.
    `decision_json`: as `upsert_request`'s (not on PostgreSQL, whose request events are
    stored by its batches: pg_batch_store.py).
    """
    if conn.dialect.name == "postgresql":
        if decision_json is not None:
            raise ValueError("an encoded decision is for SQLite: pg_batch_store takes it")
        callback_id = await pg_fastpath.store_decision(
            conn,
            claim=claim,
            verification=verification,
            shadow=shadow,
            settle=settle,
        )
    else:
        callback_id = await claim_callback(conn, claim)
        if callback_id is not None:
            await upsert_request(
                conn, verification, callback_id=callback_id, decision_json=decision_json
            )
            await add_shadow_matches(conn, shadow)
            if settle is not None:
                await counters.settle(conn, settle)
    if callback_id is not None:
        await stats_rollup.mark_late(conn, verification.requested_at)
    return callback_id
