"""Helpers for backtest tests: stored attempts, a run through the service, and the window
arithmetic the expectations are computed with (written out here, not taken from the app)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.backtest import jobs
from app.store import backtests as store
from tests.audit.rows import insert_rows, row

BASE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # on a bucket boundary (60 s buckets)
BUCKET = 60
DEFAULTS = jobs.Defaults(default_action="allow", timezone="UTC", bucket_seconds=BUCKET)
_ids = itertools.count(1)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return BASE + timedelta(minutes=minutes, seconds=seconds)


def attempt(when: datetime, **over: Any) -> dict[str, Any]:
    """A stored request event at `when` (allowed by live unless told), with a fresh id."""
    values = {"id": f"bt-{next(_ids):06d}", "requested_at": when, **over}
    if values.get("status") and "result_at" not in values:
        values["result_at"] = when + timedelta(seconds=40)
    return row(**values)


def denied(when: datetime, rule: str, **over: Any) -> dict[str, Any]:
    return attempt(when, action="deny", reason=rule, rule_name=rule, decided_by="enforce", **over)


async def store_rows(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    keys = {key for r in rows for key in r}
    await insert_rows(engine, [{key: r.get(key) for key in keys} for r in rows])


async def backtest(
    engine: AsyncEngine,
    policy: dict[str, Any],
    *,
    since: datetime = BASE,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Start and run a backtest in this process; its stored result."""
    until = until or since + timedelta(days=1)
    record = await jobs.start(
        engine,
        document=policy,
        since=since,
        until=until,
        by="test",
        now=datetime.now(UTC),
        defaults=DEFAULTS,
    )
    assert await jobs.execute(engine, record.id) == "done"
    async with engine.connect() as conn:
        final = await store.get(conn, record.id)
    assert final is not None and final.result is not None
    return final.result


def bucket(moment: datetime) -> int:
    epoch = int(moment.timestamp())
    return epoch - epoch % BUCKET


def in_window(earlier: datetime, now: datetime, window_seconds: int) -> bool:
    """`earlier` is in the window of `now`: the ceil(W / bucket) newest buckets up to now's."""
    first = bucket(now) - (math.ceil(window_seconds / BUCKET) - 1) * BUCKET
    return first <= bucket(earlier) and earlier <= now


def rule(name: str, when: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {"name": name, "action": "deny", "reason": name.replace("-", "_"), "when": when, **over}
