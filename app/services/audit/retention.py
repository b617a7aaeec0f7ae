"""Retention: purge old verifications (in batches) and old counter buckets; replace old numbers
with a keyed hash (HMAC-SHA256) that keeps the range, so old audit data stops being personal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.metrics import Metrics
from app.services.periodic import every
from app.store import retention as store
from app.store import stats_rollup
from app.store.counter_model import BucketClock
from app.store.retention import StoredBody, StoredNumber

log = structlog.get_logger()
RANGE_CHARS = 7  # "+467012": calling code and the first digits survive anonymisation


@dataclass
class Purged:
    dry_run: bool = False
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            self.rows[name] = self.rows.get(name, 0) + count


def pseudonym(number: str, key: bytes) -> str:
    """`+467012#<24 hex>`: the same number always gives the same token, under one key."""
    digest = hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:24]
    return f"{number[:RANGE_CHARS]}{store.ANONYMIZED}{digest}"


async def purge(
    engine: AsyncEngine,
    *,
    older_than: timedelta,
    counter_retention: timedelta,
    now: datetime,
    dry_run: bool = False,
    batch: int = 1000,
    metrics: Metrics | None = None,
) -> Purged:
    """Delete verifications created before now - older_than, with their callbacks and matches;
    callbacks received before it; counter buckets older than the counters' retention.
    Counted in the app's `metrics` when given (the CLI runs without an app's)."""
    before = now - older_than
    oldest_bucket = BucketClock(1).bucket(now - counter_retention)
    result = Purged(dry_run=dry_run)
    if dry_run:
        async with engine.connect() as conn:
            result.add(await store.count_old(conn, before, oldest_bucket))
        return result
    async with engine.begin() as conn:
        await store.summarize_new_ranges(conn)
    await _delete_old(engine, result, before, batch)
    async with engine.begin() as conn:
        result.add({"counters": await store.delete_counters(conn, oldest_bucket)})
        result.add({"counter_hours": await store.delete_counter_hours(conn, oldest_bucket)})
        await stats_rollup.forget_before(conn, before)
    for table, count in result.rows.items():
        if metrics is not None:
            metrics.retention_rows.labels(table, "deleted").inc(count)
    return result


async def _delete_old(engine: AsyncEngine, result: Purged, before: datetime, batch: int) -> None:
    """Verifications (with their callbacks and matches), then callbacks, in batches of one
    transaction each (a purge of millions of rows never holds one long lock)."""
    while True:
        async with engine.begin() as conn:
            ids = await store.old_verifications(conn, before, batch)
            if ids:
                result.add(await store.delete_verifications(conn, ids))
        if len(ids) < batch:
            break
    while True:
        async with engine.begin() as conn:
            gone = await store.delete_callbacks(
                conn, await store.old_callbacks(conn, before, batch)
            )
        result.add({"callbacks": gone})
        if gone < batch:
            break


async def anonymize(
    engine: AsyncEngine,
    *,
    older_than: timedelta,
    key: bytes,
    now: datetime,
    dry_run: bool = False,
    batch: int = 500,
    metrics: Metrics | None = None,
    since: datetime | None = None,
) -> int:
    """Replace numbers of verifications created before now - older_than, everywhere stored
    (only those created at or after `since`, when given: see `Watermark`)."""
    before, done = now - older_than, 0
    if dry_run:
        async with engine.connect() as conn:
            return await store.count_to_anonymize(conn, before)
    async with engine.begin() as conn:
        await store.summarize_new_ranges(conn)
    while True:
        async with engine.begin() as conn:
            rows = await store.numbers_to_anonymize(conn, before, batch, since)
            if rows:
                tokens = {row.id: (row.number, pseudonym(row.number, key)) for row in rows}
                await store.set_numbers(conn, [_anonymized(row, tokens) for row in rows])
                bodies = await store.bodies_of(conn, list(tokens))
                if bodies:
                    await store.set_bodies(conn, [_redacted(body, tokens) for body in bodies])
        done += len(rows)
        if len(rows) < batch:
            break
    if metrics is not None:
        metrics.retention_rows.labels("verifications", "anonymized").inc(done)
    return done


@dataclass
class Watermark:
    """The periodic task's anonymisation reads only what became old since its last run:
    after a run, every verification created before that run's `before` is anonymised (a
    row is created at its write's `now`), so the next run starts from it, less `MARGIN`
    (a worker's clock behind, a spool replayed with older times). A full pass still runs
    every `FULL_EVERY` (and at each start): without the watermark each hourly run read every
    verification older than the threshold, the already anonymised ones too, a read that
    grows with the history kept (bench/job_growth.py)."""

    MARGIN = timedelta(days=1)
    FULL_EVERY = timedelta(days=1)
    done_before: datetime | None = None  # the last run's `before`
    full_at: datetime | None = None  # when the last full pass ran

    def since(self, now: datetime) -> datetime | None:
        if (
            self.done_before is None
            or self.full_at is None
            or now - self.full_at >= self.FULL_EVERY
        ):
            return None
        return self.done_before - self.MARGIN

    def ran(self, now: datetime, before: datetime, since: datetime | None) -> None:
        self.done_before = before
        if since is None:
            self.full_at = now


def _anonymized(row: StoredNumber, tokens: dict[str, tuple[str, str]]) -> StoredNumber:
    number, token = tokens[row.id]
    decision = row.decision
    if decision is not None:
        decision = json.loads(json.dumps(decision).replace(number, token))
    return StoredNumber(row.id, token, decision)


def _redacted(body: StoredBody, tokens: dict[str, tuple[str, str]]) -> StoredBody:
    """The number as stored and as Sinch sent it (`identity.endpoint`) become the token."""
    number, token = tokens[body.verification_id]
    raw = body.raw_body
    try:
        payload = json.loads(raw)
        endpoint = payload["identity"]["endpoint"]
    except (ValueError, KeyError, TypeError):
        endpoint = None
    for secret in (number, endpoint):
        if isinstance(secret, str) and secret:
            raw = raw.replace(secret.encode(), token.encode())
    return StoredBody(body.id, body.verification_id, raw)


async def run_periodically(
    engine: AsyncEngine,
    *,
    interval: float,
    retention_days: int | None,
    counter_retention: timedelta,
    anonymize_after_days: int | None,
    key: bytes | None,
    now: Callable[[], datetime],
    paused: Callable[[], bool],
    busy: Callable[[], bool] | None = None,
    metrics: Metrics,
) -> None:
    """The automatic retention task of the app: every `interval` seconds, unless paused; with
    `busy`, waiting out a burst of request events (services/periodic.py `every`)."""
    watermark = Watermark()

    async def run() -> None:
        if retention_days:
            older = timedelta(days=retention_days)
            purged = await purge(
                engine,
                older_than=older,
                counter_retention=counter_retention,
                now=now(),
                metrics=metrics,
            )
            log.info("retention.purged", **purged.rows)
        if anonymize_after_days and key:
            older, at = timedelta(days=anonymize_after_days), now()
            since = watermark.since(at)
            count = await anonymize(
                engine, older_than=older, key=key, now=at, metrics=metrics, since=since
            )
            watermark.ran(at, at - older, since)
            log.info("retention.anonymized", verifications=count, since=since)

    await every(interval, run, paused=paused, failed="retention.failed", busy=busy)
