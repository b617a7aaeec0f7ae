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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, String, and_, any_, bindparam, case, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.baselines import SUCCESSFUL, aware, key_expression
from app.store.tables import callbacks, verifications

REQUEST, RESULT = "VerificationRequestEvent", "VerificationResultEvent"
GAP_LIFETIME = timedelta(minutes=10)  # a claim uncommitted longer than this is not waited for
MAX_GAPS = 2000  # the newest kept (each is a parameter of the next read)
FIRST_GAPS = 100_000  # ids below the first mark checked for claims not committed yet
# Verifications read per statement: SQLite takes one parameter each; PostgreSQL, given
# 9,000 ids of 300,000 rows in one array, scanned the table rather than probe the key.
CHUNK = 900


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
    seen = set((await conn.execute(select(c.id).where(c.id > floor))).scalars())
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
    c = callbacks.c
    ids, top = await _new_ids(conn, mark)
    filled = sorted(i for i in mark.gaps if i in ids)
    span = and_(c.id > mark.last, c.id <= top)
    received = case((c.event == RESULT, c.received_at)).label("received_at")  # results' only
    stmt = select(c.id, c.event, c.verification_id, received).where(
        or_(span, c.id.in_(filled)) if filled else span, c.event.in_((REQUEST, RESULT))
    )
    claims = (await conn.execute(stmt)).all()
    relevant = [row for row in claims if row.event in (REQUEST, RESULT) and row.verification_id]
    found = await _verifications(conn, sorted({row.verification_id for row in relevant}), keys)
    out: dict[str, Change] = {}
    for row in relevant:
        v = found.get(row.verification_id)
        if v is None or v.requested_at is None:
            continue  # a result before its request: counted when the request is stored
        attempt = int(row.id) == v.request_callback_id
        setter = row.received_at is not None and row.received_at == v.result_at
        verified = v.status == SUCCESSFUL and (attempt or setter)
        if not (attempt or verified):
            continue
        before = out.get(v.id)
        out[v.id] = Change(
            aware(v.requested_at),
            tuple(v[5:]),
            attempt or bool(before and before.attempt),
            verified or bool(before and before.verified),
        )
    return list(out.values()), _next(mark, ids, top, now)


async def _verifications(
    conn: AsyncConnection, ids: Sequence[str], keys: Sequence[tuple[str, int | None]]
) -> dict[str, Row[Any]]:
    """The verifications by id, with their keys (in chunks: one parameter each)."""
    v = verifications.c
    columns = [v.id, v.requested_at, v.status, v.result_at, v.request_callback_id]
    columns += [key_expression(k, d).label(f"k{i}") for i, (k, d) in enumerate(keys)]
    if conn.dialect.name == "postgresql":  # one parameter (an array), one prepared statement
        wanted: Any = v.id == any_(bindparam("ids", type_=ARRAY(String)))
    out: dict[str, Row[Any]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        if conn.dialect.name == "postgresql":
            rows = await conn.execute(select(*columns).where(wanted), {"ids": chunk})
        else:
            rows = await conn.execute(select(*columns).where(v.id.in_(chunk)))
        out |= {row.id: row for row in rows}
    return out


async def _new_ids(conn: AsyncConnection, mark: Mark) -> tuple[set[int], int]:
    """The claim ids visible past the mark, and among its gaps; the highest. Counted first:
    without a gap (the usual case) they are every id up to the highest, not fetched."""
    c = callbacks.c
    count, top = (
        await conn.execute(select(func.count(), func.max(c.id)).where(c.id > mark.last))
    ).one()
    top = int(top) if top is not None else mark.last
    if count == top - mark.last:
        ids = set(range(mark.last + 1, top + 1))
    else:
        ids = set((await conn.execute(select(c.id).where(c.id > mark.last))).scalars())
    if mark.gaps:
        ids |= set((await conn.execute(select(c.id).where(c.id.in_(sorted(mark.gaps))))).scalars())
    return ids, top


def _next(mark: Mark, ids: set[int], top: int, now: datetime) -> Mark:
    gaps = {i: t for i, t in mark.gaps.items() if i not in ids and now - t < GAP_LIFETIME}
    gaps |= {i: now for i in range(mark.last + 1, top) if i not in ids}
    if len(gaps) > MAX_GAPS:
        gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
    return Mark(top, gaps)
