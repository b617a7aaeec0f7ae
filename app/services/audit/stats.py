"""Audit statistics: attempts, decisions, outcomes and spend per time bucket and group.

Spend is reported per currency (Sinch prices in the account's currency, but nothing stops
two applications from using two). Without `since`, the window is the last 24 hours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import BadRequest
from app.services.audit.queries import AuditContext, record
from app.services.audit.view import mask_deep
from app.store import audit_stats as store
from app.store import stats_rollup as rollup
from app.store.audit import AuditFilter
from app.store.audit_stats import Bucket, GroupBy, ShadowCell, StatsCell

__all__ = ["Bucket", "GroupBy", "stats"]

DEFAULT_WINDOW = timedelta(hours=24)
MAX_BUCKETS = 10_000
_WIDTH = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_COUNTS = ("attempts", "allowed", "denied", "shadow_would_deny", "completed", "successful")
_SHADOW_COUNTS = ("matches", "would_deny", "would_deny_allowed", "would_deny_successful")


async def stats(
    *,
    conn: AsyncConnection,
    ctx: AuditContext,
    filters: AuditFilter,
    bucket: Bucket | None,
    group_by: GroupBy | None,
    range_digits: int,
    top: int,
) -> dict[str, Any]:
    """Stats over the filtered window, plus the top denied number ranges and shadow rules."""
    await record(conn, ctx=ctx)
    window = _window(filters, now=ctx.at, bucket=bucket)
    cells: list[StatsCell] = []
    shadow: list[ShadowCell] = []
    for part, rolled in await _parts(conn, window, bucket=bucket, now=ctx.at):
        cells += await store.grouped(conn, part, bucket=bucket, group_by=group_by, rolled=rolled)
        shadow += await store.shadow_rules(conn, part, rolled=rolled)
    ranges = await store.top_denied_ranges(conn, window, digits=range_digits, limit=top)
    result = {
        "since": window.since,
        "until": window.until,
        "bucket": bucket,
        "groupBy": group_by,
        "rows": sorted(_merge(cells, ("bucket", "grp")), key=_order),
        "totals": (_merge(cells, ()) or [_finish(_rename(_empty()))])[0],
        "topDeniedRanges": [{"range": r.range, "denied": r.denied} for r in ranges],
        "shadowRules": _merge(shadow, ("rule",), _SHADOW_COUNTS, ("spend_would_save",)),
    }
    return result if ctx.reveal else mask_deep(result)


async def _parts(
    conn: AsyncConnection, window: AuditFilter, *, bucket: Bucket | None, now: datetime
) -> list[tuple[AuditFilter, bool]]:
    """The window as (part, rolled) pieces: its settled whole hours from the hourly rollup
    (refreshed first), the edges and the last, unsettled hours from the rows themselves."""
    since, until = window.since, window.until
    assert since is not None
    assert until is not None
    first = rollup.ceil_hour(since)
    last = min(rollup.floor_hour(until), rollup.settled_until(now))
    if not store.rollable(window, bucket) or first >= last:
        return [(window, False)]
    await rollup.refresh(conn, first, last)
    pieces = [(since, first, False), (first, last, True), (last, until, False)]
    return [
        (dataclasses.replace(window, since=start, until=end), rolled)
        for start, end, rolled in pieces
        if start < end
    ]


def _window(filters: AuditFilter, *, now: datetime, bucket: Bucket | None) -> AuditFilter:
    until = filters.until or now
    since = filters.since or until - DEFAULT_WINDOW
    if since >= until:
        raise BadRequest("since must be before until.", code="empty_window")
    if bucket is not None and (until - since) / _WIDTH[bucket] > MAX_BUCKETS:
        detail = f"More than {MAX_BUCKETS} {bucket} buckets: narrow the window or widen the bucket."
        raise BadRequest(detail, code="too_many_buckets")
    return dataclasses.replace(filters, since=since, until=until)


def _merge(
    rows: Iterable[StatsCell | ShadowCell],
    keys: tuple[str, ...],
    counts: tuple[str, ...] = _COUNTS,
    spends: tuple[str, ...] = ("spend_allowed", "spend_denied"),
) -> list[dict[str, Any]]:
    """Fold per-currency rows into one per key: counts summed, spend as {currency: amount}.

    `keys`, `counts` and `spends` name fields of the rows; the cells are the answer's."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(_key(name, getattr(row, name)) for name in keys)
        cell = merged.setdefault(key, _empty(dict(zip(keys, key, strict=True)), counts, spends))
        for name in counts:
            cell[name] += int(getattr(row, name) or 0)
        for name in spends:
            spent = getattr(row, name)
            if spent is not None:
                by_currency = cell[name]
                currency = row.currency or "unknown"
                by_currency[currency] = round(by_currency.get(currency, 0.0) + spent, 6)
    return [_finish(_rename(cell)) for cell in merged.values()]


def _key(name: str, value: Any) -> Any:
    if name != "bucket" or value is None:
        return value
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _empty(
    keys: dict[str, Any] | None = None,
    counts: tuple[str, ...] = _COUNTS,
    spends: tuple[str, ...] = ("spend_allowed", "spend_denied"),
) -> dict[str, Any]:
    cell: dict[str, Any] = dict(keys or {})
    cell.update({name: 0 for name in counts})
    cell.update({name: {} for name in spends})
    return cell


def _finish(cell: dict[str, Any]) -> dict[str, Any]:
    if "allowed" in cell:
        allowed = cell["allowed"]
        cell["conversionRate"] = round(cell["successful"] / allowed, 4) if allowed else None
    return cell


def _rename(cell: dict[str, Any]) -> dict[str, Any]:
    renamed = {_camel(name): value for name, value in cell.items()}
    if "grp" in renamed:
        renamed["group"] = renamed.pop("grp")
    return renamed


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    bucket = row.get("bucket")
    return (bucket is not None, bucket, str(row.get("group")))
