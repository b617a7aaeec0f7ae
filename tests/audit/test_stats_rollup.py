"""The hourly stats rollup: equal to a scan of the rows, and kept exact by late writes,
purges and concurrent refreshes."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest
from httpx import AsyncClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.audit import retention
from app.services.audit import stats as audit_stats
from app.services.audit.queries import AuditContext, AuditFilter
from app.services.tokens import Principal
from app.sinch import samples
from app.store import inbox, stats_rollup
from app.store.models import (
    StatsCountryHourRow,
    StatsHourRow,
    StatsHourStateRow,
    VerificationMatchRow,
)
from app.store.rows import CallbackClaim, RequestRow
from tests.audit.rows import BASE, insert_rows, minutes, row
from tests.support import SinchSender

COUNTRIES = {"SE": "+4670", "GB": "+4477", "NG": "+234803"}
RULES = [  # (action, reason, decided_by, rule_name)
    ("allow", "default", "default", None),
    ("deny", "number_velocity", "enforce", "velocity"),
    ("deny", "premium_rate", "enforce", "premium"),
]
STATUSES = [None, "SUCCESSFUL", "FAIL", "PENDING"]


def _random_rows(count: int, seed: int) -> list[dict[str, Any]]:
    """Rows spread over three days around BASE, with every dimension varied."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        country = rng.choice(list(COUNTRIES))
        action, reason, decided_by, rule_name = rng.choice(RULES)
        at = BASE - timedelta(days=1) + timedelta(seconds=rng.randrange(3 * 86400))
        rows.append(
            row(
                requested_at=at,
                app_key=rng.choice(["app-one", "app-two"]),
                method=rng.choice(["sms", "flashcall"]),
                country=country,
                number=f"{COUNTRIES[country]}{rng.randrange(10**7):07d}",
                action=action,
                reason=reason,
                decided_by=decided_by,
                rule_name=rule_name,
                status=rng.choice(STATUSES),
                shadow_deny=action == "allow" and rng.random() < 0.2,
                price_amount=rng.choice([None, 0.01, 0.25, 1.5]),
                price_currency=rng.choice(["EUR", "EUR", "USD"]),
            )
        )
    return rows


def _bucket(at: datetime, bucket: str | None) -> str | None:
    if bucket is None:
        return None
    start = at.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def _group(r: dict[str, Any], group_by: str | None) -> Any:
    if group_by == "rule":
        return r["rule_name"] or r["decided_by"]
    return r[group_by] if group_by else None


def _expected(
    rows: list[dict[str, Any]],
    since: datetime,
    until: datetime,
    keep: dict[str, str],
    bucket: str | None,
    group_by: str | None,
) -> dict[tuple[Any, Any], dict[str, Any]]:
    """What the stats must say, computed here from the rows alone."""
    field = {"application": "app_key", "rule": "rule_name"}
    cells: dict[tuple[Any, Any], dict[str, Any]] = defaultdict(
        lambda: (
            {"attempts": 0, "allowed": 0, "denied": 0, "shadowWouldDeny": 0}
            | {"completed": 0, "successful": 0, "spendAllowed": {}, "spendDenied": {}}
        )
    )
    for r in rows:
        if not since <= r["requested_at"] < until:
            continue
        if keep.get("mode") == "enforce" and r["decided_by"] != "enforce":
            continue
        if keep.get("status") == "PENDING" and r["status"] not in (None, "PENDING"):
            continue
        special = ("mode", "status") if keep.get("status") == "PENDING" else ("mode",)
        if any(r[field.get(k, k)] != v for k, v in keep.items() if k not in special):
            continue
        cell = cells[_bucket(r["requested_at"], bucket), _group(r, group_by)]
        cell["attempts"] += 1
        cell["allowed"] += r["action"] == "allow"
        cell["denied"] += r["action"] == "deny"
        cell["shadowWouldDeny"] += r["action"] == "allow" and r["shadow_deny"]
        cell["completed"] += r["status"] in ("SUCCESSFUL", "FAIL")
        cell["successful"] += r["status"] == "SUCCESSFUL"
        if r["price_amount"] is not None:
            spend = cell["spendAllowed" if r["action"] == "allow" else "spendDenied"]
            currency = r["price_currency"]
            spend[currency] = spend.get(currency, 0) + r["price_amount"]
    return dict(cells)


def _random_matches(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Shadow-rule matches for some of the rows, stamped with their request's time."""
    rng = random.Random(seed)
    return [
        {
            "verification_id": r["id"],
            "rule_name": rng.choice(["night_watch", "geo_watch"]),
            "action": rng.choice(["deny", "deny", "allow"]),
            "reason": "watch",
            "matched_at": r["requested_at"],
        }
        for r in rows
        if rng.random() < 0.3
    ]


def _expected_shadow(
    rows: list[dict[str, Any]], found: list[dict[str, Any]], keep_ids: set[str]
) -> dict[str, dict[str, Any]]:
    by_id = {r["id"]: r for r in rows}
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: (
            {"matches": 0, "wouldDeny": 0, "wouldDenyAllowed": 0, "wouldDenySuccessful": 0}
            | {"spendWouldSave": {}}
        )
    )
    for m in found:
        if m["verification_id"] not in keep_ids:
            continue
        r, cell = by_id[m["verification_id"]], out[m["rule_name"]]
        extra = m["action"] == "deny" and r["action"] == "allow"
        cell["matches"] += 1
        cell["wouldDeny"] += m["action"] == "deny"
        cell["wouldDenyAllowed"] += extra
        cell["wouldDenySuccessful"] += extra and r["status"] == "SUCCESSFUL"
        if extra and r["price_amount"] is not None:
            spend = cell["spendWouldSave"]
            spend[r["price_currency"]] = spend.get(r["price_currency"], 0) + r["price_amount"]
    return dict(out)


def _rounded(cell: dict[str, Any]) -> dict[str, Any]:
    """Spend sums rounded, so that float addition order does not matter."""
    return {
        k: {cur: round(v, 6) for cur, v in value.items()} if isinstance(value, dict) else value
        for k, value in cell.items()
    }


async def _stats(client: AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/audit/stats", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _expected_ranges(
    rows: list[dict[str, Any]],
    since: datetime,
    until: datetime,
    keep: dict[str, str],
    digits: int,
    top: int,
) -> list[dict[str, Any]]:
    """The top denied ranges, counted here from the rows alone."""
    kept = _expected(rows, since, until, keep, None, "id")
    denied: dict[str, int] = defaultdict(int)
    for r in rows:
        if (None, r["id"]) in kept and r["action"] == "deny":
            denied[r["number"][: digits + 1]] += 1
    ordered = sorted(denied.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [{"range": name, "denied": count} for name, count in ordered]


async def _rolled(
    engine: AsyncEngine, table: type[StatsHourRow | StatsCountryHourRow] = StatsHourRow
) -> tuple[int, int]:
    """(rollup rows, attempts they hold)."""
    async with engine.connect() as conn:
        stmt = select(func.count(), func.coalesce(func.sum(table.attempts), 0))
        count, attempts = (await conn.execute(stmt)).one()
    return int(count), int(attempts)


@pytest.mark.parametrize(
    "keep",
    [
        {},
        {"country": "GB"},
        {"action": "deny", "application": "app-two"},
        {"rule": "velocity", "mode": "enforce"},
        {"status": "SUCCESSFUL"},
        {"status": "PENDING", "country": "SE"},
    ],
)
async def test_rollup_answers_exactly_what_a_scan_of_the_rows_gives(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine, keep: dict[str, str]
) -> None:
    rows = _random_rows(400, seed=len(keep))
    await insert_rows(engine, rows)
    found = _random_matches(rows, seed=len(keep))
    async with engine.begin() as conn:
        await conn.execute(insert(VerificationMatchRow), found)
    # Edges off the hour: the partial first and last hours come from the rows themselves.
    since, until = BASE - timedelta(hours=20, minutes=43), BASE + timedelta(hours=30, minutes=7)
    window = {"since": since.isoformat(), "until": until.isoformat()}
    for bucket in (None, "hour", "day"):
        for group_by in (None, "country", "rule"):
            params = (
                window | keep | {k: v for k, v in [("bucket", bucket), ("group_by", group_by)] if v}
            )
            body = await _stats(client, admin, **params)
            got = {(r.get("bucket"), r.get("group")): r for r in body["rows"]}
            expected = _expected(rows, since, until, keep, bucket, group_by)
            assert set(got) == set(expected), (bucket, group_by)
            for key, cell in expected.items():
                for name in ("attempts", "allowed", "denied", "shadowWouldDeny"):
                    assert got[key][name] == cell[name], (bucket, group_by, key, name)
                assert (got[key]["completed"], got[key]["successful"]) == (
                    cell["completed"],
                    cell["successful"],
                )
                for name in ("spendAllowed", "spendDenied"):
                    assert got[key][name] == pytest.approx(cell[name]), (key, name)
            kept = _expected(rows, since, until, keep, None, "id")
            shadow = _expected_shadow(rows, found, {ident for _, ident in kept})
            assert {r["rule"]: _rounded(r) for r in body["shadowRules"]} == {
                rule: _rounded(cell | {"rule": rule}) for rule, cell in shadow.items()
            }
    for digits in (4, 6, 8):  # 4 and 6 from stats_range_hourly when `keep` allows, 8 a scan
        body = await _stats(client, admin, **window, **keep, range_digits=digits, top=5)
        assert body["topDeniedRanges"] == _expected_ranges(rows, since, until, keep, digits, 5)
    rolled_rows, rolled_attempts = await _rolled(engine)
    assert rolled_rows > 0, "the settled whole hours were answered from the rollup"
    assert await _rolled(engine, StatsCountryHourRow) == (ANY, rolled_attempts)
    assert rolled_attempts == sum(
        BASE - timedelta(hours=20) <= r["requested_at"] < BASE + timedelta(hours=30) for r in rows
    )


async def test_a_late_result_rolls_its_hour_again(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine, sinch: SinchSender
) -> None:
    old = row(requested_at=BASE + minutes(5), number="+46701234233")
    await insert_rows(engine, [old])
    day = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z"}
    before = (await _stats(client, admin, **day))["totals"]
    assert (before["attempts"], before["completed"], before["successful"]) == (1, 0, 0)
    assert (await _rolled(engine))[1] == 1

    result = samples.result_event(verification_id=old["id"], number="+46701234233")
    assert (await sinch.post(result)).status_code == 200

    after = (await _stats(client, admin, **day))["totals"]
    assert (after["attempts"], after["completed"], after["successful"]) == (1, 1, 1)
    assert after["conversionRate"] == 1.0


async def test_an_old_request_stored_late_counts_in_its_own_hour(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A request replayed from the spool long after it came is stored with its own time."""
    await insert_rows(engine, [row(requested_at=BASE + minutes(5))])
    day = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z"}
    assert (await _stats(client, admin, **day))["totals"]["attempts"] == 1

    late = row(requested_at=BASE + minutes(50), action="deny", reason="number_velocity")
    claim = CallbackClaim(
        received_at=late["requested_at"],
        app_key=None,
        event="VerificationRequestEvent",
        verification_id=late["id"],
        dedupe_key=f"VerificationRequestEvent:{late['id']}",
        signature="valid",
        http_status=200,
        error_code=None,
        content_type=None,
        raw_body=b"{}",
    )
    unset = dict.fromkeys(inbox.REQUEST_COLUMNS)
    fields = {k: v for k, v in late.items() if k in inbox.REQUEST_COLUMNS}
    decided = RequestRow(**(unset | fields | {"answer": {"action": "deny"}, "decision": {}}))
    async with engine.begin() as conn:
        assert await inbox.store_decision(conn, claim=claim, verification=decided, shadow=[])

    totals = (await _stats(client, admin, **day))["totals"]
    assert (totals["attempts"], totals["denied"]) == (2, 1)


async def test_a_purge_takes_its_hours_out_of_the_rollup(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    await insert_rows(engine, [row(requested_at=BASE + minutes(m)) for m in (5, 65, 125)])
    day = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z"}
    assert (await _stats(client, admin, **day))["totals"]["attempts"] == 3

    cutoff = BASE + minutes(100)  # the first two go
    await retention.purge(
        engine,
        older_than=timedelta(days=1),
        counter_retention=timedelta(days=8),
        now=cutoff + timedelta(days=1),
    )

    assert (await _stats(client, admin, **day))["totals"]["attempts"] == 1
    assert (await _rolled(engine))[1] == 1


async def test_concurrent_refreshes_roll_each_hour_once(engine: AsyncEngine) -> None:
    rows = _random_rows(200, seed=7)
    await insert_rows(engine, rows)
    since, until = BASE - timedelta(days=1), BASE + timedelta(days=2)

    async def refresh() -> int:
        async with engine.begin() as conn:
            return await stats_rollup.refresh(conn, since, until)

    rolled = await asyncio.gather(*(refresh() for _ in range(4)))

    async with engine.connect() as conn:
        marked = (await conn.execute(select(func.count()).select_from(StatsHourStateRow))).scalar()
    first_hour = stats_rollup.floor_hour(min(r["requested_at"] for r in rows))
    assert sum(rolled) == marked == (until - first_hour) // timedelta(hours=1)
    assert (await _rolled(engine))[1] == len(rows)


async def test_unsettled_hours_are_not_rolled(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    recent = [row(requested_at=now - minutes(m), created_at=now) for m in (1, 50, 200)]
    await insert_rows(engine, recent)
    since = (now - timedelta(hours=6)).isoformat()
    totals = (await _stats(client, admin, since=since, bucket="hour"))["totals"]
    assert totals["attempts"] == 3
    async with engine.connect() as conn:
        newest = (await conn.execute(select(func.max(StatsHourStateRow.hour)))).scalar()
    assert newest is None or newest < stats_rollup.settled_until(now)


async def test_a_breakdown_equals_the_stats_of_each_view(engine: AsyncEngine) -> None:
    """What the console's overview reads: per bucket, per country, totals and ranges, as
    /audit/stats answers each, over rolled hours and edges from the rows alike."""
    rows = _random_rows(400, seed=11)
    await insert_rows(engine, rows)
    since, until = BASE - timedelta(hours=20, minutes=43), BASE + timedelta(hours=30, minutes=7)
    principal = Principal(token_id=None, name="test", role="admin")
    ctx = AuditContext(principal, "GET", "/", {}, until + timedelta(days=1), reveal=True)
    window = AuditFilter(since=since, until=until)
    common: dict[str, Any] = {"ctx": ctx, "filters": window, "range_digits": 6}
    async with engine.begin() as conn:
        got = await audit_stats.breakdown(
            conn=conn, bucket="hour", group_by="country", top=5, **common
        )
        per_hour = await audit_stats.stats(conn=conn, bucket="hour", group_by=None, top=5, **common)
        per_country = await audit_stats.stats(
            conn=conn, bucket=None, group_by="country", top=1, **common
        )
    assert got.by_bucket == per_hour["rows"]
    assert got.by_group == per_country["rows"]
    assert got.totals == per_hour["totals"]
    assert got.ranges == per_hour["topDeniedRanges"]
    assert sum(row["attempts"] for row in got.by_group) == sum(
        since <= r["requested_at"] < until for r in rows
    )
