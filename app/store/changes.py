"""What changed in the stored verifications since a mark, read from the inbox (`callbacks`).

Every write that can add an attempt or a success claims its callback's inbox row in the
same transaction (request events, results; a fallback answer or a spooled callback when it
is replayed), and the inbox's ids grow with each claim. So the claims above the last id read
(and the ids missing below it: claims not committed then) name the verifications that changed,
whatever their request time: a result hours late, a request stored after its result. Read
through indexes: the inbox's span past the mark once, then each verification named once,
by request time around the claims' receipt (the refresh's seconds lie together in the
index and the heap: a few thousand buffers, not a primary-key descent per claim) and by id
for the rest; the cost follows the callbacks since the last read, not the history.
Per verification this returns the attempt its request's claim stored and the success it
completed: one requested and SUCCESSFUL now whose request's claim, or the result
claim that set its status (received at its `result_at`), is new was not both before (in
the previous snapshot); a PENDING after it, or a redelivery, completes nothing.
Not seen: a final result replaced by another final one (SUCCESSFUL by FAIL, or by a
SUCCESSFUL with another reason), rows purged or anonymized; services/baselines.py
re-reads everything now and then for those.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, any_, case, func, literal_column, select
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
# Around the claims' receipt times, the request times read in order (_recent).
RECENT_MARGIN = timedelta(seconds=5)
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
# Claims turned into changes in one step of the event loop (2,000: 6-9 ms of CPU; 1,000
# still made steps of 2-3.5 ms, the refresh's share of the soak's steps over 2 ms).
CLAIM_CHUNK = 500
# Inbox ids read at a time (their claims decoded in one step of the event loop: the ~18,000
# ids of a refresh at 300/s in one result were 6 ms of decoding and 8 ms making a set).
SPAN_CHUNK = 1000


# (inbox id, event, verification id, received at if a result) of a request or result claim
# (event and verification id None for any other inbox row).
Claim = tuple[int, str | None, str | None, datetime | None]


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
    seen = set((await conn.execute(select(c.id).where(_ids(floor, int(top))))).scalars())
    return Mark(int(top), {i: now for i in range(floor + 1, int(top)) if i not in seen})


async def changes(
    conn: AsyncConnection,
    mark: Mark,
    keys: Sequence[tuple[str, int | None]],
    now: datetime,
) -> tuple[list[Change], Mark]:
    """The attempts and successes the claims after `mark` stored; the next mark.

    Reads by primary key, not one join (the planner, which cannot know how many claims lie
    past the statistics' last id, chose a hash join over a scan of every verification):
    the inbox past the mark once, a range at a time (its ids present and its claims in the
    same pass over the heap: a count, then the ids, then the claims visited the same pages
    up to three times), then each verification the claims name once, in id order (its
    request's and result's claims, 2 s apart, fall in different ranges: read per range,
    most verifications were looked up twice)."""
    top = await _top(conn, mark)
    claims, filled = await _filled(conn, mark)
    missing: set[int] = set()  # ids in (last, top] not visible in this snapshot
    for lo in range(mark.last, top, SPAN_CHUNK):
        hi = min(top, lo + SPAN_CHUNK)
        rows = await _span(conn, lo, hi)
        if len(rows) != hi - lo:
            missing.update(set(range(lo + 1, hi + 1)).difference([row[0] for row in rows]))
        claims += [row for row in rows if row[2] is not None]
        await asyncio.sleep(0)  # the request path's turns, on the same event loop
    wanted = {c[2] for c in claims if c[2] is not None}
    found = await _recent(conn, claims, wanted, tuple(keys))
    found |= await _verifications(conn, sorted(wanted.difference(found)), tuple(keys))
    out: dict[str, Change] = {}  # by verification: its request's and result's claims are one
    for start in range(0, len(claims), CLAIM_CHUNK):
        _collect(out, claims[start : start + CLAIM_CHUNK], found)
        await asyncio.sleep(0)
    return list(out.values()), _next(mark, missing, filled, top, now)


def _collect(
    out: dict[str, Change],
    claims: Sequence[Claim],
    found: dict[str, Sequence[Any]],
) -> None:
    for claim_id, event, verification_id, received_at in claims:
        v = found.get(verification_id or "")
        if verification_id is None or v is None or v[1] is None:
            continue  # a result before its request: counted when the request is stored
        attempt = claim_id == v[4]
        verified = v[2] == SUCCESSFUL and (
            attempt or (event == RESULT and received_at is not None and received_at == v[3])
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


async def _span(conn: AsyncConnection, last: int, top: int) -> list[Claim]:
    """Every inbox id in (last, top], with its (event, verification id, received at if a
    result) when it is a request or result claim (None otherwise): one pass over the span's
    heap pages, in the order they were written."""
    if conn.dialect.name == "postgresql":  # asyncpg's rows: a fifth of SQLAlchemy's CPU
        rows = await (await driver(conn)).fetch(_PG_SPAN, last, top)
        return [(int(r[0]), r[1], r[2], r[3]) for r in rows]
    stmt = select(*_claim_columns()).where(_ids(last, top))
    return [(int(r[0]), r[1], r[2], r[3]) for r in await conn.execute(stmt)]


async def _filled(conn: AsyncConnection, mark: Mark) -> tuple[list[Claim], set[int]]:
    """The claims among the mark's gaps now visible, and those gaps' ids (filled)."""
    if not mark.gaps:
        return [], set()
    wanted = sorted(mark.gaps)
    if conn.dialect.name == "postgresql":
        rows: Any = await (await driver(conn)).fetch(_PG_GAPS, wanted)
    else:
        stmt = select(*_claim_columns()).where(callbacks.c.id.in_(wanted))
        rows = await conn.execute(stmt)
    found = [(int(r[0]), r[1], r[2], r[3]) for r in rows]
    return [row for row in found if row[2] is not None], {row[0] for row in found}


def _claim_columns() -> list[Any]:
    c = callbacks.c
    claim = and_(c.event.in_((REQUEST, RESULT)), c.verification_id.is_not(None))
    return [
        c.id,
        case((claim, c.event)),
        case((claim, c.verification_id)),
        case((claim, c.received_at)),
    ]


# Ranges bounded on both sides: an open `id > $1`, planned on a never-analysed table (a new
# database before autovacuum's first pass, or without it), is a scan of every callback,
# kept by the connection's generic plan as the inbox grows. Each gap is looked up by its id
# (a LATERAL subquery the LIMIT keeps apart, as in pg_outcomes.py).
_PG_CLAIM_COLUMNS = (
    "SELECT c.id, CASE WHEN c.verification_id IS NOT NULL AND c.event IN "
    "('VerificationRequestEvent', 'VerificationResultEvent') THEN c.event END, "
    "CASE WHEN c.event IN ('VerificationRequestEvent', 'VerificationResultEvent') "
    "THEN c.verification_id END, "
    "CASE WHEN c.event IN ('VerificationRequestEvent', 'VerificationResultEvent') "
    "THEN c.received_at END FROM callbacks c WHERE "
)
_PG_SPAN = f"{_PG_CLAIM_COLUMNS}c.id > $1 AND c.id <= $2"
_PG_GAPS = (
    "SELECT c.* FROM unnest($1::bigint[]) AS g(id) CROSS JOIN LATERAL "  # noqa: S608
    f"({_PG_CLAIM_COLUMNS}c.id = g.id LIMIT 1) AS c"
)


async def _top(conn: AsyncConnection, mark: Mark) -> int:
    """The highest inbox id visible (the primary key's last entry), never below the mark."""
    highest = (await conn.execute(select(func.max(callbacks.c.id)))).scalar()
    return max(mark.last, int(highest)) if highest is not None else mark.last


def _ids(last: int, top: int) -> Any:
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


async def _recent(
    conn: AsyncConnection,
    claims: Sequence[Claim],
    wanted: set[str],
    keys: tuple[tuple[str, int | None], ...],
) -> dict[str, Sequence[Any]]:
    """The `wanted` verifications requested around when their claims were received, read
    by request time (`ix_verifications_requested_at_id`: the rows of the refresh's seconds
    lie together, in the index and in the heap, visited in the heap's order), not one
    primary-key descent each, scattered over the index. What this misses (a result hours
    late, a request time on another clock) is read by id. A slice of time at a time (about
    CHUNK verifications: 2 * CHUNK claims); stops once it has read half as many rows not
    wanted."""
    if conn.dialect.name != "postgresql" or not wanted:
        return {}
    times = sorted(c[3] for c in claims if c[3] is not None)
    if not times:
        return {}
    # From the first hundredth of the claims (a gap filled late or a spooled callback
    # replayed does not stretch the read over the hours between) to the last.
    first = times[len(times) // 100] - RECENT_MARGIN
    bounds = [first, *(t for t in times[2 * CHUNK :: 2 * CHUNK] if t > first)]
    bounds.append(max(times[-1], bounds[-1]) + RECENT_MARGIN)
    out: dict[str, Sequence[Any]] = {}
    fetch, statement, unwanted = (await driver(conn)).fetch, _pg_recent(keys), 0
    for lo, hi in itertools.pairwise(bounds):
        if unwanted > len(wanted) // 2 + CHUNK:  # not where the wanted ones are
            break
        rows = await fetch(statement, lo, hi)
        out |= {row[0]: tuple(row) for row in rows if row[0] in wanted}
        unwanted += sum(1 for row in rows if row[0] not in wanted)
        await asyncio.sleep(0)  # the request path's turns
    return out


@cache
def _pg_recent(keys: tuple[tuple[str, int | None], ...]) -> str:
    """The verifications requested in [$1, $2)."""
    v = verifications.c
    since = v.requested_at >= literal_column("$1::timestamptz")
    before = v.requested_at < literal_column("$2::timestamptz")
    stmt = select(*_columns(keys)).where(since, before)
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
        await asyncio.sleep(0)  # the request path's turns
    return out


def _next(mark: Mark, missing: set[int], filled: set[int], top: int, now: datetime) -> Mark:
    gaps = {i: t for i, t in mark.gaps.items() if i not in filled and now - t < GAP_LIFETIME}
    gaps |= {i: now for i in missing}
    if len(gaps) > MAX_GAPS:
        gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
    return Mark(top, gaps)
