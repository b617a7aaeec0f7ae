"""What changed in the stored verifications since a mark, read from the inbox (`callbacks`).

Every write that can add an attempt or a success claims its callback's inbox row in the
same transaction (request events, results; a fallback answer or a spooled callback when it
is replayed), and the inbox's ids grow with each claim. So the claims above the last id read
(and the ids missing below it: claims not committed then) name the verifications that changed,
whatever their request time: a result hours late, a request stored after its result. Read
through the primary key: the cost follows the callbacks since the last read, not the
history. Per claim this returns the attempt it stored (a request's own claim) and the
success it completed: a verification counts as verified from the claim after which it is
both requested and SUCCESSFUL (its request's claim, or the result claim that set its
status, whichever came last); a PENDING after it, or a redelivery, completes nothing.
Not seen: a final result replaced by another final one (SUCCESSFUL by FAIL, or by a
SUCCESSFUL with another reason), rows purged or anonymized; services/baselines.py
re-reads everything now and then for those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.baselines import SUCCESSFUL, aware, key_expression
from app.store.tables import callbacks, verifications

REQUEST, RESULT = "VerificationRequestEvent", "VerificationResultEvent"
GAP_LIFETIME = timedelta(minutes=10)  # a claim uncommitted longer than this is not waited for
MAX_GAPS = 2000  # the newest kept (each is a parameter of the next read)
FIRST_GAPS = 100_000  # ids below the first mark checked for claims not committed yet


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
    """The attempts and successes the claims after `mark` stored; the next mark."""
    c = callbacks.c
    gaps = sorted(mark.gaps)
    fresh = or_(c.id > mark.last, c.id.in_(gaps)) if gaps else c.id > mark.last
    ids = set((await conn.execute(select(c.id).where(fresh))).scalars())
    top = max([mark.last, *ids])
    found = [i for i in gaps if i in ids]
    rows = await conn.execute(_statement(mark.last, top, found, keys))
    out = [
        Change(aware(row[0]), tuple(row[3:]), bool(row.attempt), bool(row.verified)) for row in rows
    ]
    return out, _next(mark, ids, top, now)


def _statement(
    last: int, top: int, found: Sequence[int], keys: Sequence[tuple[str, int | None]]
) -> Select[Any]:
    c, v = callbacks.c, verifications.c
    r = callbacks.alias("r")
    setter = (
        select(func.max(r.c.id))
        .where(r.c.verification_id == v.id, r.c.event == RESULT, r.c.received_at == v.result_at)
        .scalar_subquery()
    )
    entry = case((setter > v.request_callback_id, setter), else_=v.request_callback_id)
    attempt = c.id == v.request_callback_id
    verified = and_(v.status == SUCCESSFUL, c.id == entry)
    span = and_(c.id > last, c.id <= top)
    claims = or_(span, c.id.in_(found)) if found else span
    return (
        select(
            v.requested_at,
            case((attempt, True), else_=False).label("attempt"),
            case((verified, True), else_=False).label("verified"),
            *(key_expression(k, d).label(f"k{i}") for i, (k, d) in enumerate(keys)),
        )
        .select_from(callbacks.join(verifications, v.id == c.verification_id))
        .where(
            claims,
            c.event.in_((REQUEST, RESULT)),
            v.requested_at.is_not(None),
            or_(attempt, verified),
        )
    )


def _next(mark: Mark, ids: set[int], top: int, now: datetime) -> Mark:
    gaps = {i: t for i, t in mark.gaps.items() if i not in ids and now - t < GAP_LIFETIME}
    gaps |= {i: now for i in range(mark.last + 1, top) if i not in ids}
    if len(gaps) > MAX_GAPS:
        gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
    return Mark(top, gaps)
