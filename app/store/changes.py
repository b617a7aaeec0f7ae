"""What changed in the stored verifications since a mark, read from the inbox (`callbacks`).

Every write that can add an attempt or a success claims its callback's inbox row in the
same transaction (request events, results; a fallback answer or a spooled callback when it
is replayed), and the inbox's ids grow with each claim. So the claims above the last id read
(and the ids missing below it: claims not committed then) name the verifications that changed,
whatever their request time: a result hours late, a request stored after its result. Read
through the primary key: the cost follows the callbacks since the last read, not the
history. Per verification this returns the attempt its request's claim stored and the
success it completed: one requested and SUCCESSFUL now whose request's claim, or the result
claim that set its status (received at its `result_at`), is new was not both before (in
the previous snapshot); a PENDING after it, or a redelivery, completes nothing.
Not seen: a final result replaced by another final one (SUCCESSFUL by FAIL, or by a
SUCCESSFUL with another reason), rows purged or anonymized; services/baselines.py
re-reads everything now and then for those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, any_, case, func, literal_column, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.baselines import SUCCESSFUL, aware, key_expression
from app.store.pg_fastpath import driver
from app.store.tables import callbacks, verifications

REQUEST, RESULT = "VerificationRequestEvent", "VerificationResultEvent"
GAP_LIFETIME = timedelta(minutes=10)  # a claim uncommitted longer than this is not waited for
MAX_GAPS = 2000  # the newest kept (each is a parameter of the next read)
FIRST_GAPS = 100_000  # ids below the first mark checked for claims not committed yet
# Verifications read per statement: SQLite takes one parameter each; PostgreSQL, given
# 9,000 ids of 300,000 rows in one array, scanned the table rather than probe the key.
CHUNK = 900
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
# Claim ids read at a time (then their verifications): a few MB at most in flight, and
# each chunk's rows turned into changes in one step of the event loop (2,000: 6-9 ms of CPU;
# 1,000 still made steps of 2-3.5 ms, the refresh's share of the soak's steps over 2 ms).
CLAIM_CHUNK = 500
PRESENT_CHUNK = 1000  # ids in (last, top] read at a time when some are missing


@dataclass(frozen=True, slots=True)
class Change:
    """A verification an inbox claim changed: requested at `requested_at`, its keys (as
    `keys` asked), and whether this claim stored its attempt and/or completed its success."""

    requested_at: datetime
    keys: tuple[str | None, ...]
    attempt: bool
    verified: bool


@dataclass(slots=True)
class Mark:
    """The highest inbox id read, and the ids below it not seen yet (since when)."""

    last: int = 0
    gaps: dict[int, datetime] = field(default_factory=dict)


async def start(conn: AsyncConnection, now: datetime) -> Mark:
    """The mark of everything visible now (read in the same snapshot as a full read)."""
    c = callbacks.c
    top = (await conn.execute(select(func.max(c.id)))).scalar()
    if top is None:
        return Mark()
    floor = max(0, int(top) - FIRST_GAPS)
    seen = set((await conn.execute(select(c.id).where(_span(floor, int(top))))).scalars())
    return Mark(int(top), {i: now for i in range(floor + 1, int(top)) if i not in seen})


async def changes(
    conn: AsyncConnection,
    mark: Mark,
    keys: Sequence[tuple[str, int | None]],
    now: datetime,
) -> tuple[list[Change], Mark]:
    """The attempts and successes the claims after `mark` stored; the next mark.

    Two reads by primary key (the claims, then their verifications), not one join: the
    planner, which cannot know how many claims lie past the statistics' last id, chose a
    hash join over a scan of every verification."""
    present, filled, top = await _new_ids(conn, mark)
    refill = sorted(filled)
    out: dict[str, Change] = {}  # by verification: its request's and result's claims are one
    for lo in range(mark.last, top, CLAIM_CHUNK):
        hi = min(top, lo + CLAIM_CHUNK)
        claims = await _claims(conn, lo, hi, refill if lo == mark.last else [])
        found = await _verifications(conn, sorted({claim[2] for claim in claims}), tuple(keys))
        _collect(out, claims, found)
        await asyncio.sleep(0)  # the request path's turns, on the same event loop
    if top == mark.last and filled:
        claims = await _claims(conn, top, top, refill)
        found = await _verifications(conn, sorted({claim[2] for claim in claims}), tuple(keys))
        _collect(out, claims, found)
    return list(out.values()), _next(mark, present, filled, top, now)


def _collect(
    out: dict[str, Change],
    claims: Sequence[tuple[int, str, str, datetime | None]],
    found: dict[str, Sequence[Any]],
) -> None:
    for claim_id, _, verification_id, received_at in claims:
        v = found.get(verification_id)
        if v is None or v[1] is None:
            continue  # a result before its request: counted when the request is stored
        attempt = claim_id == v[4]
        verified = v[2] == SUCCESSFUL and (
            attempt or (received_at is not None and received_at == v[3])
        )
        if not (attempt or verified):
            continue
        before = out.get(verification_id)
        out[verification_id] = Change(
            aware(v[1]),
            tuple(v[5:]),
            attempt or bool(before and before.attempt),
            verified or bool(before and before.verified),
        )


async def _claims(
    conn: AsyncConnection, last: int, top: int, filled: Sequence[int]
) -> list[tuple[int, str, str, datetime | None]]:
    """(id, event, verification id, received at if a result) of the new request and result
    claims: those in (last, top] and the gaps `filled`."""
    if conn.dialect.name == "postgresql":  # asyncpg's rows: a fifth of SQLAlchemy's CPU
        rows = await (await driver(conn)).fetch(_PG_CLAIMS, last, top, list(filled))
        return [(int(r[0]), r[1], r[2], r[3]) for r in rows]
    c = callbacks.c
    span = and_(c.id > last, c.id <= top)
    received = case((c.event == RESULT, c.received_at))
    stmt = select(c.id, c.event, c.verification_id, received).where(
        or_(span, c.id.in_(filled)) if filled else span,
        c.event.in_((REQUEST, RESULT)),
        c.verification_id.is_not(None),
    )
    return [(int(r[0]), r[1], r[2], r[3]) for r in await conn.execute(stmt)]


# The span and the gaps read apart: an OR of the two, or an open `id > $1`, planned on a
# never-analysed table (a new database before autovacuum's first pass, or without it) is a
# scan of every callback, kept by the connection's generic plan as the inbox grows.
# Each gap is looked up by its id (a LATERAL subquery the LIMIT keeps apart, as in
# pg_outcomes.py).
_PG_CLAIM_COLUMNS = (
    "SELECT c.id, c.event, c.verification_id, "
    "CASE WHEN c.event = 'VerificationResultEvent' THEN c.received_at END FROM callbacks c WHERE "
)
_PG_CLAIM_KINDS = (
    " AND c.verification_id IS NOT NULL "
    "AND c.event IN ('VerificationRequestEvent', 'VerificationResultEvent')"
)
_PG_CLAIMS = (
    f"{_PG_CLAIM_COLUMNS}c.id > $1 AND c.id <= $2{_PG_CLAIM_KINDS} UNION ALL "  # noqa: S608
    "SELECT c.* FROM unnest($3::bigint[]) AS g(id) CROSS JOIN LATERAL "
    f"({_PG_CLAIM_COLUMNS}c.id = g.id AND NOT (c.id > $1 AND c.id <= $2){_PG_CLAIM_KINDS} "
    "LIMIT 1) AS c"
)


_PG_PRESENT = "SELECT id FROM callbacks WHERE id > $1 AND id <= $2"


def _span(last: int, top: int) -> Any:
    """Ids in (last, top]: bounded on both sides, a range the primary key serves in any
    plan (an open `id > last` is estimated at a third of the table without statistics)."""
    c = callbacks.c
    return and_(c.id > last, c.id <= top)


def _columns(keys: tuple[tuple[str, int | None], ...]) -> list[Any]:
    v = verifications.c
    columns: list[Any] = [v.id, v.requested_at, v.status, v.result_at, v.request_callback_id]
    return columns + [key_expression(k, d).label(f"k{i}") for i, (k, d) in enumerate(keys)]


@cache
def _pg_verifications(keys: tuple[tuple[str, int | None], ...]) -> str:
    wanted = verifications.c.id == any_(literal_column("$1::text[]"))
    stmt = select(*_columns(keys)).where(wanted)
    return str(stmt.compile(dialect=_PG, compile_kwargs={"literal_binds": True}))


async def _verifications(
    conn: AsyncConnection, ids: Sequence[str], keys: tuple[tuple[str, int | None], ...]
) -> dict[str, Sequence[Any]]:
    """The verifications by id: (id, requested_at, status, result_at, request_callback_id,
    *keys), in chunks."""
    out: dict[str, Sequence[Any]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        if conn.dialect.name == "postgresql":
            rows: Any = await (await driver(conn)).fetch(_pg_verifications(keys), chunk)
        else:
            stmt = select(*_columns(keys)).where(verifications.c.id.in_(chunk))
            rows = await conn.execute(stmt)
        out |= {row[0]: tuple(row) for row in rows}
    return out


async def _new_ids(conn: AsyncConnection, mark: Mark) -> tuple[set[int] | None, set[int], int]:
    """The claim ids visible past the mark (None: all of them up to the highest, the usual
    case, counted rather than fetched), the mark's gaps now filled, and the highest id."""
    c = callbacks.c
    highest = (await conn.execute(select(func.max(c.id)))).scalar()  # the index's last entry
    top = max(mark.last, int(highest)) if highest is not None else mark.last
    count = (await conn.execute(select(func.count()).where(_span(mark.last, top)))).scalar()
    present = None
    if count != top - mark.last and conn.dialect.name == "postgresql":  # asyncpg's rows
        # A span at a time: the ~18,000 ids of a refresh at 300/s in one result were 6 ms
        # of the event loop decoding them and 8 ms making the set (bench/loop_watch.py).
        present, fetch = set(), (await driver(conn)).fetch
        for lo in range(mark.last, top, PRESENT_CHUNK):
            rows = await fetch(_PG_PRESENT, lo, min(top, lo + PRESENT_CHUNK))
            present.update([int(row[0]) for row in rows])
    elif count != top - mark.last:
        present = set((await conn.execute(select(c.id).where(_span(mark.last, top)))).scalars())
    filled: set[int] = set()
    if mark.gaps:
        stmt = select(c.id).where(c.id.in_(sorted(mark.gaps)))
        filled = set((await conn.execute(stmt)).scalars())
    return present, filled, top


def _next(mark: Mark, present: set[int] | None, filled: set[int], top: int, now: datetime) -> Mark:
    gaps = {i: t for i, t in mark.gaps.items() if i not in filled and now - t < GAP_LIFETIME}
    if present is not None:
        gaps |= {i: now for i in range(mark.last + 1, top) if i not in present}
    if len(gaps) > MAX_GAPS:
        gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
    return Mark(top, gaps)
