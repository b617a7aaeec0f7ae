"""PostgreSQL: results and delivery receipts that arrive together stored in one transaction.

Stored one by one through SQLAlchemy, a receipt cost four statements and a commit (~1.8 ms
of the server's CPU), a result seven statements and three commits (~3.3 ms): a soak of 300
request events/s with their receipts and results needed more than the worker's one core.
Here a batch of them is three multi-row statements on the raw asyncpg connection — claim
the inbox rows, upsert the results (returning what each verification was before: its
counter keys and status), upsert the receipts — and one commit.

Order is kept: events of one verification in one batch go in successive rounds, each
round's statements seeing the rounds before (a PENDING after a SUCCESSFUL keeps the
final status, exactly as one by one). A dedupe key seen twice in a batch is a duplicate
the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import DEDUPE_CONFLICT_PG
from app.store.pg_fastpath import driver
from app.store.rows import (
    CallbackClaim,
    DeliveryRow,
    ResultRow,
    VerificationKeys,
    columns,
    params,
)
from app.store.stats_rollup import LATE, floor_hour
from app.store.tables import callbacks, verifications

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
PENDING = "PENDING"
KEY_COLUMNS = tuple(VerificationKeys.__annotations__)
CLAIM_COLUMNS = columns(CallbackClaim)
RESULT_COLUMNS = columns(ResultRow)
DELIVERY_COLUMNS = columns(DeliveryRow)


@dataclass(frozen=True, slots=True)
class ResultWrite:
    claim: CallbackClaim
    row: ResultRow


@dataclass(frozen=True, slots=True)
class DeliveryWrite:
    claim: CallbackClaim
    row: DeliveryRow


Write = ResultWrite | DeliveryWrite


@dataclass(slots=True)
class Written:
    """What became of one write: stored (else a redelivery) and, for a result, what its
    verification was before it (None: not known then)."""

    stored: bool = False
    known: VerificationKeys | None = None


def _array(table: Table, column: str) -> str:
    """The parameter's array type. Strings go as text: an explicit cast to varchar(n) would
    cut a value that is too long, where storing it fails, as through SQLAlchemy."""
    kind = table.c[column].type
    return "text[]" if isinstance(kind, String) else f"{kind.compile(dialect=_PG)}[]"


def _unnest(table: Table, names: Sequence[str], first: int = 1) -> str:
    arrays = ", ".join(f"${first + i}::{_array(table, c)}" for i, c in enumerate(names))
    return f"unnest({arrays}) AS r({', '.join(names)})"


@cache
def _claim_sql() -> str:
    names = ", ".join(CLAIM_COLUMNS)
    return (
        f"INSERT INTO callbacks ({names}) SELECT {names} FROM {_unnest(callbacks, CLAIM_COLUMNS)} "
        f"ON CONFLICT {DEDUPE_CONFLICT_PG} DO NOTHING RETURNING dedupe_key"
    )


@cache
def _result_sql() -> str:
    """Upsert the results; return each verification's keys as they were before."""
    names = ", ".join(RESULT_COLUMNS)
    keep_final = f"(excluded.status = '{PENDING}' AND verifications.status IS NOT NULL)"
    final = ", ".join(
        f"{c} = CASE WHEN {keep_final} THEN verifications.{c} ELSE excluded.{c} END"
        for c in ("status", "status_reason", "status_source", "result_at")
    )
    first = ", ".join(
        f"{c} = coalesce(verifications.{c}, excluded.{c})"
        for c in ("method", "number", "reference", "custom")
    )
    before = ", ".join(f"v.{c}" for c in KEY_COLUMNS)
    # Each result's row looked up by its id, in a LATERAL subquery the LIMIT keeps apart:
    # written as a join, the generic plan the pool's connections make in a new deployment's
    # first seconds (a small, never-analysed table) hashed a sequential scan of the whole
    # table, and kept it as the table grew (tests/store/test_generic_plans.py).
    return (
        f"WITH r AS (SELECT * FROM {_unnest(verifications, RESULT_COLUMNS)}), "
        f"before AS (SELECT v.* FROM r CROSS JOIN LATERAL (SELECT v.id, {before} "
        "FROM verifications v WHERE v.id = r.id LIMIT 1) AS v), "
        f"up AS (INSERT INTO verifications ({names}) SELECT {names} FROM r "
        f"ON CONFLICT (id) DO UPDATE SET {final}, {first}) "
        "SELECT * FROM before"
    )


@cache
def _delivery_sql() -> str:
    names = ", ".join(DELIVERY_COLUMNS)
    return (
        f"INSERT INTO verifications ({names}) SELECT {names} "
        f"FROM {_unnest(verifications, DELIVERY_COLUMNS)} ON CONFLICT (id) DO UPDATE SET "
        "sms_result = excluded.sms_result, sms_delivered_at = excluded.sms_delivered_at"
    )


MARK_LATE_SQL = (
    "INSERT INTO stats_hours (hour, dirty) SELECT unnest($1::timestamptz[]), true "
    "ON CONFLICT (hour) DO UPDATE SET dirty = true, version = stats_hours.version + 1"
)


async def write_outcomes(engine: AsyncEngine, writes: Sequence[Write]) -> list[Written]:
    """Store `writes` in one transaction; what became of each, in order."""
    out = [Written() for _ in writes]
    async with engine.connect() as conn:
        apg = await driver(conn)
        async with apg.transaction():
            claimed = await _claim(apg, writes)
            for round_ in _rounds(writes, claimed):
                await _store_round(apg, [writes[i] for i in round_], [out[i] for i in round_])
            await _mark_late(apg, out)
    for i in claimed:
        out[i].stored = True
    return out


async def _claim(apg: Any, writes: Sequence[Write]) -> list[int]:
    """Claim the inbox rows; the indexes claimed (the first of a key repeated in the batch)."""
    first: dict[str | None, int] = {}
    for i, write in enumerate(writes):
        first.setdefault(write.claim.dedupe_key, i)
    unique = sorted(first.values())
    # In key order (as the rows of each upsert below in id order): two workers' batches
    # then take their row locks in the same order rather than deadlock.
    rows = sorted((params(writes[i].claim) for i in unique), key=lambda r: str(r["dedupe_key"]))
    args = [[row[c] for row in rows] for c in CLAIM_COLUMNS]
    keys = {r["dedupe_key"] for r in await apg.fetch(_claim_sql(), *args)}
    return [i for i in unique if writes[i].claim.dedupe_key in keys]


def _rounds(writes: Sequence[Write], claimed: Sequence[int]) -> list[list[int]]:
    """The claimed writes in rounds where each verification appears at most once, per kind,
    in arrival order."""
    rounds: list[list[int]] = []
    seen: dict[tuple[type, str], int] = {}
    for i in claimed:
        slot = (type(writes[i]), writes[i].row.id)
        n = seen[slot] = seen.get(slot, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


async def _store_round(apg: Any, writes: list[Write], out: list[Written]) -> None:
    results = [(w.row, o) for w, o in zip(writes, out, strict=True) if isinstance(w, ResultWrite)]
    results.sort(key=lambda pair: pair[0].id)
    deliveries = sorted((w.row for w in writes if isinstance(w, DeliveryWrite)), key=_id)
    if results:
        rows = [params(row) for row, _ in results]
        args = [[row[c] for row in rows] for c in RESULT_COLUMNS]
        before = {r["id"]: r for r in await apg.fetch(_result_sql(), *args)}
        for row, written in results:
            found = before.get(row.id)
            if found is not None:
                written.known = cast(VerificationKeys, {c: found[c] for c in KEY_COLUMNS})
    if deliveries:
        rows = [params(row) for row in deliveries]
        await apg.execute(_delivery_sql(), *[[row[c] for row in rows] for c in DELIVERY_COLUMNS])


def _id(row: DeliveryRow) -> str:
    return row.id


async def _mark_late(apg: Any, out: Sequence[Written], now: datetime | None = None) -> None:
    """The hours of old verifications a result touched are rolled again (stats_rollup.py)."""
    edge = (now or datetime.now(UTC)) - LATE
    hours = {
        floor_hour(w.known["requested_at"])
        for w in out
        if w.known is not None
        and w.known["requested_at"] is not None
        and w.known["requested_at"] < edge
    }
    if hours:
        await apg.execute(MARK_LATE_SQL, sorted(hours))
