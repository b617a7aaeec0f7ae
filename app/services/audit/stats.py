"""Audit statistics: attempts, decisions, outcomes and spend per time bucket and group.

Spend is reported per currency (Sinch prices in the account's currency, but nothing stops
two applications from using two). Without `since`, the window is the last 24 hours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import BadRequest
from app.services.audit.documents import (
    DeniedRangeDoc,
    ShadowRuleDoc,
    StatsCounts,
    StatsDoc,
    StatsRow,
    StatsTotals,
)
from app.services.audit.queries import AuditContext, read_apart, record
from app.services.audit.rollup import refresh_apart
from app.services.audit.view import mask_deep
from app.store import audit_stats as store
from app.store import stats_rollup as rollup
from app.store.audit import AuditFilter
from app.store.audit_stats import Bucket, DeniedRange, GroupBy, ShadowCell, StatsCell

__all__ = ["Breakdown", "Bucket", "GroupBy", "breakdown", "stats", "stats_apart"]

DEFAULT_WINDOW = timedelta(hours=24)
MAX_BUCKETS = 10_000
_WIDTH = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


async def stats(
    *,
    conn: AsyncConnection,
    ctx: AuditContext,
    filters: AuditFilter,
    bucket: Bucket | None,
    group_by: GroupBy | None,
    range_digits: int,
    top: int,
    roll: bool = True,
) -> StatsDoc:
    """Stats over the filtered window, plus the top denied number ranges and shadow rules.
    `roll` False: the rollup was made exact already (`roll_for`), and `conn` may be a
    reader's."""
    await record(conn, ctx=ctx)
    window = _window(filters, now=ctx.at, bucket=bucket)
    cells: list[StatsCell] = []
    shadow: list[ShadowCell] = []
    parts = await _parts(conn, window, bucket=bucket, now=ctx.at, roll=roll)
    for part, rolled in parts:
        cells += await store.grouped(conn, part, bucket=bucket, group_by=group_by, rolled=rolled)
        shadow += await store.shadow_rules(conn, part, rolled=rolled)
    ranges = await _ranges(conn, window, parts, digits=range_digits, top=top)
    assert window.since is not None
    assert window.until is not None
    result: StatsDoc = {
        "since": window.since,
        "until": window.until,
        "bucket": bucket,
        "groupBy": group_by,
        "rows": sorted(_grouped_rows(cells), key=_order),
        "totals": _totals(cells),
        "topDeniedRanges": [{"range": r.range, "denied": r.denied} for r in ranges],
        "shadowRules": _shadow_rows(shadow),
    }
    return result if ctx.reveal else mask_deep(result)


async def stats_apart(
    writer: AsyncEngine,
    reader: AsyncEngine,
    *,
    ctx: AuditContext,
    filters: AuditFilter,
    bucket: Bucket | None,
    group_by: GroupBy | None,
    range_digits: int,
    top: int,
) -> StatsDoc:
    """`stats`, read beside the writer: the rollup made exact apart from it (`roll_for`),
    the rows read on the reader (on SQLite the writer is the one connection request events
    are decided on, and an attack's last hour is a million rows to read), then the query
    logged in a short transaction of the writer. A query that fails is not logged here (the
    caller logs its refusal), as when it ran in one transaction."""
    await roll_for(writer, reader, filters, bucket=bucket, now=ctx.at)
    return await read_apart(
        writer,
        reader,
        ctx,
        lambda conn, quiet: stats(
            conn=conn,
            ctx=quiet,
            filters=filters,
            bucket=bucket,
            group_by=group_by,
            range_digits=range_digits,
            top=top,
            roll=False,
        ),
    )


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One window as a dashboard shows it: totals, rows per bucket and rows per group (each
    summed over the other), the top denied ranges; no shadow rules."""

    since: datetime
    until: datetime
    totals: StatsTotals
    by_bucket: list[StatsRow]
    by_group: list[StatsRow]
    ranges: list[DeniedRangeDoc]


async def breakdown(
    *,
    conn: AsyncConnection,
    ctx: AuditContext,
    filters: AuditFilter,
    bucket: Bucket | None,
    group_by: GroupBy | None,
    range_digits: int,
    top: int,
    roll: bool = True,
) -> Breakdown:
    """`stats` for a dashboard, logged once: per bucket and per group, the totals, the top
    denied ranges. `roll` False: the rollup was refreshed already (`roll_for`, on another
    connection), and `conn` may be a reader's (nothing written)."""
    await record(conn, ctx=ctx)
    window = _window(filters, now=ctx.at, bucket=bucket)
    parts = await _parts(conn, window, bucket=bucket, now=ctx.at, roll=roll)
    by_bucket: list[StatsCell] = []
    by_group: list[StatsCell] = []
    for part, rolled in parts:
        cells = await _views(conn, part, rolled, bucket=bucket, group_by=group_by)
        by_bucket += cells[0]
        by_group += cells[1]
    ranges = await _ranges(conn, window, parts, digits=range_digits, top=top)
    assert window.since is not None
    assert window.until is not None
    docs: list[DeniedRangeDoc] = [{"range": r.range, "denied": r.denied} for r in ranges]
    groups = sorted(_grouped_rows(by_group), key=_order)
    return Breakdown(
        since=window.since,
        until=window.until,
        totals=_totals(by_group),
        by_bucket=sorted(_grouped_rows(by_bucket), key=_order),
        by_group=groups if ctx.reveal else mask_deep(groups),
        ranges=docs if ctx.reveal else mask_deep(docs),
    )


async def _views(
    conn: AsyncConnection,
    part: AuditFilter,
    rolled: bool,
    *,
    bucket: Bucket | None,
    group_by: GroupBy | None,
) -> tuple[list[StatsCell], list[StatsCell]]:
    """A part's cells per bucket and per group. From a rollup the database sums each (a few
    dozen cells, not buckets x groups); rows are scanned once, and their cells split here."""
    if bucket is None:
        return [], await store.grouped(conn, part, bucket=None, group_by=group_by, rolled=rolled)
    if not rolled:
        cells = await store.grouped(conn, part, bucket=bucket, group_by=group_by)
        split = [dataclasses.replace(c, grp=None) for c in cells]
        return split, [dataclasses.replace(c, bucket=None) for c in cells]
    return (
        await store.grouped(conn, part, bucket=bucket, group_by=None, rolled=True),
        await store.grouped(conn, part, bucket=None, group_by=group_by, rolled=True),
    )


async def roll_for(
    writer: AsyncEngine,
    reader: AsyncEngine,
    filters: AuditFilter,
    *,
    bucket: Bucket | None,
    now: datetime,
) -> None:
    """The hourly rollup made exact for what `breakdown(..., roll=False)` reads of this
    window: aggregated on the reader, stored through the writer (`refresh_apart`)."""
    span = _rolled_span(_window(filters, now=now, bucket=bucket), bucket=bucket, now=now)
    if span is not None:
        await refresh_apart(writer, reader, *span)


def _rolled_span(
    window: AuditFilter, *, bucket: Bucket | None, now: datetime
) -> tuple[datetime, datetime] | None:
    """The window's settled whole hours, read from the rollup; None: none is."""
    assert window.since is not None
    assert window.until is not None
    first = rollup.ceil_hour(window.since)
    last = min(rollup.floor_hour(window.until), rollup.settled_until(now))
    if not store.rollable(window, bucket) or first >= last:
        return None
    return first, last


async def _parts(
    conn: AsyncConnection,
    window: AuditFilter,
    *,
    bucket: Bucket | None,
    now: datetime,
    roll: bool = True,
) -> list[tuple[AuditFilter, bool]]:
    """The window as (part, rolled) pieces: its settled whole hours from the hourly rollup
    (refreshed first unless `roll` is False), the edges and the last, unsettled hours from
    the rows themselves."""
    since, until = window.since, window.until
    assert since is not None
    assert until is not None
    span = _rolled_span(window, bucket=bucket, now=now)
    if span is None:
        return [(window, False)]
    first, last = span
    if roll:
        await rollup.refresh(conn, first, last)
    pieces = [(since, first, False), (first, last, True), (last, until, False)]
    return [
        (dataclasses.replace(window, since=start, until=end), rolled)
        for start, end, rolled in pieces
        if start < end
    ]


async def _ranges(
    conn: AsyncConnection,
    window: AuditFilter,
    parts: list[tuple[AuditFilter, bool]],
    *,
    digits: int,
    top: int,
) -> list[DeniedRange]:
    """The top denied ranges: rolled parts from `stats_range_hourly`, the others from the
    denied rows (one statement); when that rollup cannot answer, from the rows alone."""
    if top <= 0:
        return []
    if not store.ranges_rollable(window, digits) or not any(rolled for _, rolled in parts):
        return await store.top_denied_ranges(conn, window, digits=digits, limit=top)
    return await store.top_denied_ranges_of(conn, parts, digits=digits, limit=top)


def _window(filters: AuditFilter, *, now: datetime, bucket: Bucket | None) -> AuditFilter:
    until = filters.until or now
    since = filters.since or until - DEFAULT_WINDOW
    if since >= until:
        raise BadRequest("since must be before until.", code="empty_window")
    if bucket is not None and (until - since) / _WIDTH[bucket] > MAX_BUCKETS:
        detail = f"More than {MAX_BUCKETS} {bucket} buckets: narrow the window or widen the bucket."
        raise BadRequest(detail, code="too_many_buckets")
    return dataclasses.replace(filters, since=since, until=until)


Spend = dict[str, float]
_Key = tuple[datetime | None, str | None]


def _add_spend(spend: Spend, amount: float | None, currency: str | None) -> None:
    """Spend is kept per currency: {currency: amount}, rounded as it adds up."""
    if amount is not None:
        key = currency or "unknown"
        spend[key] = round(spend.get(key, 0.0) + amount, 6)


@dataclass(slots=True)
class _Tally:
    """One row's counts summed over currencies, and its spend per currency."""

    attempts: int = 0
    allowed: int = 0
    denied: int = 0
    shadow_would_deny: int = 0
    completed: int = 0
    successful: int = 0
    spend_allowed: Spend = field(default_factory=dict)
    spend_denied: Spend = field(default_factory=dict)

    def add(self, cell: StatsCell) -> None:
        self.attempts += int(cell.attempts or 0)  # a sum may come as a Decimal
        self.allowed += int(cell.allowed or 0)
        self.denied += int(cell.denied or 0)
        self.shadow_would_deny += int(cell.shadow_would_deny or 0)
        self.completed += int(cell.completed or 0)
        self.successful += int(cell.successful or 0)
        _add_spend(self.spend_allowed, cell.spend_allowed, cell.currency)
        _add_spend(self.spend_denied, cell.spend_denied, cell.currency)

    def conversion(self) -> float | None:
        return round(self.successful / self.allowed, 4) if self.allowed else None

    def counts(self) -> StatsCounts:
        return {
            "attempts": self.attempts,
            "allowed": self.allowed,
            "denied": self.denied,
            "shadowWouldDeny": self.shadow_would_deny,
            "completed": self.completed,
            "successful": self.successful,
            "spendAllowed": self.spend_allowed,
            "spendDenied": self.spend_denied,
        }


def _grouped_rows(cells: Iterable[StatsCell]) -> list[StatsRow]:
    """One row per (bucket, group), in order of first appearance; `group` before the rate."""
    tallies: dict[_Key, _Tally] = {}
    for cell in cells:
        tallies.setdefault((_bucket(cell.bucket), cell.grp), _Tally()).add(cell)
    rows: list[StatsRow] = []
    for (bucket, group), tally in tallies.items():
        rate = tally.conversion()
        rows.append({"bucket": bucket, **tally.counts(), "group": group, "conversionRate": rate})
    return rows


def _totals(cells: Iterable[StatsCell]) -> StatsTotals:
    tally = _Tally()
    for cell in cells:
        tally.add(cell)
    return {**tally.counts(), "conversionRate": tally.conversion()}


def _shadow_rows(cells: Iterable[ShadowCell]) -> list[ShadowRuleDoc]:
    """One row per shadow rule, in order of first appearance."""
    rows: dict[str, ShadowRuleDoc] = {}
    for cell in cells:
        row = rows.setdefault(cell.rule, _shadow_row(cell.rule))
        row["matches"] += int(cell.matches or 0)
        row["wouldDeny"] += int(cell.would_deny or 0)
        row["wouldDenyAllowed"] += int(cell.would_deny_allowed or 0)
        row["wouldDenySuccessful"] += int(cell.would_deny_successful or 0)
        _add_spend(row["spendWouldSave"], cell.spend_would_save, cell.currency)
    return list(rows.values())


def _shadow_row(rule: str) -> ShadowRuleDoc:
    return {
        "rule": rule,
        "matches": 0,
        "wouldDeny": 0,
        "wouldDenyAllowed": 0,
        "wouldDenySuccessful": 0,
        "spendWouldSave": {},
    }


def _bucket(value: datetime | str | None) -> datetime | None:
    """A bucket's start as an aware UTC datetime (SQLite gives naive ISO text)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _order(row: StatsRow) -> tuple[bool, datetime | None, str]:
    bucket = row["bucket"]
    return (bucket is not None, bucket, str(row["group"]))
