"""Retention queries: old verifications with their callbacks and matches, old counter buckets,
and numbers to replace with a keyed hash. Each call is one batch, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    delete,
    distinct,
    func,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import callbacks, counter_hours, counters, matches, verifications

ANONYMIZED = "#"  # an anonymised number is `<first digits>#<keyed hash>`


@dataclass(frozen=True, slots=True)
class StoredNumber:
    """A verification's number and the decision document that may repeat it."""

    id: str
    number: str
    decision: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class StoredBody:
    """An inbox row's body, as received, about one verification."""

    id: int
    verification_id: str
    raw_body: bytes


async def old_verifications(conn: AsyncConnection, before: datetime, limit: int) -> list[str]:
    stmt = (
        select(verifications.c.id)
        .where(verifications.c.created_at < before)
        .order_by(verifications.c.created_at)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).scalars())


async def delete_verifications(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, int]:
    """Delete verifications, their shadow matches and every callback about them."""
    gone = {
        "matches": await _delete(conn, delete(matches).where(matches.c.verification_id.in_(ids))),
        "callbacks": await _delete_ranged(
            conn, delete(callbacks).where(callbacks.c.verification_id.in_(ids))
        ),
    }
    gone["verifications"] = await _delete_ranged(
        conn, delete(verifications).where(verifications.c.id.in_(ids))
    )
    return gone


async def old_callbacks(conn: AsyncConnection, before: datetime, limit: int) -> list[int]:
    """Callbacks received before `before` (rejected, unparseable, or of purged verifications)."""
    stmt = select(callbacks.c.id).where(callbacks.c.received_at < before).limit(limit)
    return list((await conn.execute(stmt)).scalars())


async def delete_callbacks(conn: AsyncConnection, ids: Sequence[int]) -> int:
    return await _delete_ranged(conn, delete(callbacks).where(callbacks.c.id.in_(ids)))


async def delete_counters(conn: AsyncConnection, before_bucket: int) -> int:
    return await _delete_ranged(conn, delete(counters).where(counters.c.bucket < before_bucket))


async def delete_counter_hours(conn: AsyncConnection, before_bucket: int) -> int:
    """The hours that hold only buckets before `before_bucket` (an hour still holding a
    kept bucket stays whole: a window reads an hour it only partly covers from buckets)."""
    last = _last_gone_hour(before_bucket)
    return await _delete_ranged(conn, delete(counter_hours).where(counter_hours.c.hour <= last))


def _last_gone_hour(before_bucket: int) -> int:
    """The start of the last hour whose buckets all start before `before_bucket`."""
    return before_bucket - before_bucket % 3600 - 3600


async def count_old(conn: AsyncConnection, before: datetime, before_bucket: int) -> dict[str, int]:
    """What a purge would delete (for --dry-run)."""
    old = select(verifications.c.id).where(verifications.c.created_at < before)
    about_old = callbacks.c.verification_id.in_(old) | (callbacks.c.received_at < before)
    queries = {
        "verifications": select(func.count()).select_from(old.subquery()),
        "matches": select(func.count()).where(matches.c.verification_id.in_(old)),
        "callbacks": select(func.count()).where(about_old),
        "counters": select(func.count()).where(counters.c.bucket < before_bucket),
        "counter_hours": select(func.count()).where(
            counter_hours.c.hour <= _last_gone_hour(before_bucket)
        ),
    }
    return {name: int((await conn.execute(q)).scalar_one()) for name, q in queries.items()}


def _to_anonymize(before: datetime, since: datetime | None = None) -> Any:
    """Numbers of verifications created before `before` (and not before `since`, when given:
    the periodic task's watermark) not anonymised yet."""
    cols = verifications.c
    created = (cols.created_at < before,) + ((cols.created_at >= since,) if since else ())
    return (
        *created,
        cols.number.is_not(None),
        cols.number.not_like(f"%{ANONYMIZED}%"),
    )


async def count_to_anonymize(conn: AsyncConnection, before: datetime) -> int:
    stmt = select(func.count()).select_from(verifications).where(*_to_anonymize(before))
    return int((await conn.execute(stmt)).scalar_one())


async def numbers_to_anonymize(
    conn: AsyncConnection, before: datetime, limit: int, since: datetime | None = None
) -> list[StoredNumber]:
    cols = verifications.c
    stmt = (
        select(cols.id, cols.number, cols.decision)
        .where(*_to_anonymize(before, since))
        .order_by(cols.created_at)
        .limit(limit)
    )
    return [StoredNumber(*row) for row in await conn.execute(stmt)]


async def set_numbers(conn: AsyncConnection, rows: Sequence[StoredNumber]) -> None:
    """Store each row's number and decision in place of its verification's."""
    stmt = (
        update(verifications)
        .where(verifications.c.id == bindparam("vid"))
        .values(number=bindparam("new_number"), decision=bindparam("new_decision"))
    )
    params = [{"vid": r.id, "new_number": r.number, "new_decision": r.decision} for r in rows]
    await conn.execute(stmt, params)


async def bodies_of(conn: AsyncConnection, ids: Sequence[str]) -> list[StoredBody]:
    stmt = select(callbacks.c.id, callbacks.c.verification_id, callbacks.c.raw_body).where(
        callbacks.c.verification_id.in_(ids)
    )
    return [StoredBody(*row) for row in await conn.execute(stmt)]


async def set_bodies(conn: AsyncConnection, rows: Sequence[StoredBody]) -> None:
    """Store each row's body in place of its inbox row's."""
    stmt = (
        update(callbacks)
        .where(callbacks.c.id == bindparam("cid"))
        .values(raw_body=bindparam("new_body"))
    )
    await conn.execute(stmt, [{"cid": r.id, "new_body": r.raw_body} for r in rows])


async def _delete(conn: AsyncConnection, stmt: Any) -> int:
    return int((await conn.execute(stmt)).rowcount or 0)


# PostgreSQL: the block-range index of each table retention selects by time (migrations
# 0010, 0011), and the pages one summary covers (its default).
BRIN = {
    "verifications": "ix_verifications_created_at_brin",
    "callbacks": "ix_callbacks_received_at_brin",
    "counters": "ix_counters_bucket",
    "counter_hours": "ix_counter_hours_hour",
}
PAGES_PER_RANGE = 128
_BLOCK: Any = literal_column("((ctid::text::point)[0])::bigint")
_SUMMARIZE = text("SELECT brin_summarize_new_values(CAST(:index AS regclass))")


async def _delete_ranged(conn: AsyncConnection, stmt: Any) -> int:
    """Delete rows of a table with a block-range index; on PostgreSQL, forget the summaries
    of the ranges they leave. A summary only ever widens: once the freed space holds new
    rows, a range would still claim its purged times and be read by every later selection
    of old rows (after a retention cycle, every range). Unsummarised, it is read only until
    the next vacuum (the purge's dead rows bring one) summarises what it holds then."""
    if conn.dialect.name != "postgresql":
        return await _delete(conn, stmt)
    # One statement: the rows' blocks stay in the database (a counters purge is an hour of
    # every key's minute rows, too many to send to the client and back).
    gone = stmt.returning(_BLOCK.label("block")).cte("gone")
    ranges = select(distinct(gone.c.block - gone.c.block % PAGES_PER_RANGE).label("start"))
    starts = ranges.subquery()
    index = literal(BRIN[stmt.table.name]).cast(REGCLASS)
    forgotten = select(func.count(func.brin_desummarize_range(index, starts.c.start)))
    counted = select(func.count()).select_from(gone)
    both = select(counted.scalar_subquery(), forgotten.scalar_subquery())
    return int((await conn.execute(both)).tuples().one()[0])


async def summarize_new_ranges(conn: AsyncConnection) -> int:
    """PostgreSQL: summarise the block ranges no summary covers yet, in both tables, and
    return how many. Autovacuum does it soon after a range fills (`autosummarize`), but with
    autovacuum off or behind, a selection by time reads every unsummarised range: a purge or
    anonymisation with nothing to do would scan what accumulated since. Each range is read
    once, here, rather than by every later run."""
    if conn.dialect.name != "postgresql":
        return 0
    done = 0
    for index in BRIN.values():
        done += int((await conn.execute(_SUMMARIZE, {"index": index})).scalar_one())
    return done
