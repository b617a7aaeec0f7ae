"""Stats per time bucket and group: counts, outcomes, spend per currency, ranges, shadow rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.rows import BASE, insert_match, insert_rows, minutes, row

WINDOW = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z"}


async def _stats(client: AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/audit/stats", params=WINDOW | params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def traffic(engine: AsyncEngine) -> None:
    """10:05 SE: 2 allowed (1 successful, 1 failed), 1 denied; 11:10 GB: 3 pumped, denied."""
    pumped = [
        row(
            requested_at=BASE + timedelta(hours=1, minutes=10),
            number=f"+44700900{i:04d}",
            country="GB",
            action="deny",
            reason="number_velocity",
            decided_by="enforce",
            rule_name="velocity",
            price_amount=0.2,
        )
        for i in range(3)
    ]
    allowed_ok = row(requested_at=BASE + minutes(5), status="SUCCESSFUL", shadow_deny=True)
    allowed_fail = row(requested_at=BASE + minutes(5), status="FAIL", price_currency="USD")
    denied = row(requested_at=BASE + minutes(6), action="deny", reason="country_blocked")
    pending = row(requested_at=BASE + minutes(7), status="PENDING", price_amount=None)
    await insert_rows(engine, [*pumped, allowed_ok, allowed_fail, denied, pending])
    await insert_match(engine, allowed_ok["id"], "night_watch", "deny")
    await insert_match(engine, pumped[0]["id"], "night_watch", "deny")


async def test_totals_count_attempts_decisions_outcomes_and_spend(
    client: AsyncClient, admin: dict[str, str], traffic: None
) -> None:
    totals = (await _stats(client, admin))["totals"]
    assert totals["attempts"] == 7
    assert (totals["allowed"], totals["denied"]) == (3, 4)
    assert totals["shadowWouldDeny"] == 1
    assert (totals["completed"], totals["successful"]) == (2, 1)
    assert totals["conversionRate"] == pytest.approx(1 / 3, abs=1e-4)
    assert totals["spendAllowed"] == {"EUR": pytest.approx(0.05), "USD": pytest.approx(0.05)}
    assert totals["spendDenied"] == {"EUR": pytest.approx(0.65)}


async def test_hour_buckets_by_country(
    client: AsyncClient, auditor: dict[str, str], traffic: None
) -> None:
    body = await _stats(client, auditor, bucket="hour", group_by="country")
    cells = {(r["bucket"], r["group"]): r for r in body["rows"]}
    assert set(cells) == {("2026-03-02T10:00:00Z", "SE"), ("2026-03-02T11:00:00Z", "GB")}
    se = cells["2026-03-02T10:00:00Z", "SE"]
    assert (se["attempts"], se["allowed"], se["denied"]) == (4, 3, 1)
    gb = cells["2026-03-02T11:00:00Z", "GB"]
    assert (gb["attempts"], gb["denied"], gb["spendDenied"]) == (3, 3, {"EUR": 0.6})


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        (
            "minute",
            {
                "2026-03-02T10:05:00Z",
                "2026-03-02T10:06:00Z",
                "2026-03-02T10:07:00Z",
                "2026-03-02T11:10:00Z",
            },
        ),
        ("day", {"2026-03-02T00:00:00Z"}),
    ],
)
async def test_minute_and_day_buckets(
    client: AsyncClient, admin: dict[str, str], traffic: None, bucket: str, expected: set[str]
) -> None:
    body = await _stats(client, admin, bucket=bucket)
    assert {r["bucket"] for r in body["rows"]} == expected
    assert sum(r["attempts"] for r in body["rows"]) == 7


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("method", {"sms": 7}),
        ("rule", {"velocity": 3, "default": 4}),
        ("reason", {"number_velocity": 3, "country_blocked": 1, "default": 3}),
    ],
)
async def test_group_by_method_rule_reason(
    client: AsyncClient,
    admin: dict[str, str],
    traffic: None,
    group_by: str,
    expected: dict[str, int],
) -> None:
    body = await _stats(client, admin, group_by=group_by)
    assert {r["group"]: r["attempts"] for r in body["rows"]} == expected


async def test_top_denied_ranges_and_shadow_rules(
    client: AsyncClient, auditor: dict[str, str], traffic: None
) -> None:
    body = await _stats(client, auditor, range_digits=5)
    assert body["topDeniedRanges"][0] == {"range": "+44700", "denied": 3}
    [shadow] = body["shadowRules"]
    assert shadow["rule"] == "night_watch"
    assert (shadow["matches"], shadow["wouldDeny"], shadow["wouldDenyAllowed"]) == (2, 2, 1)
    assert shadow["wouldDenySuccessful"] == 1
    assert shadow["spendWouldSave"] == {"EUR": 0.05}


async def test_filters_apply_to_stats(
    client: AsyncClient, admin: dict[str, str], traffic: None
) -> None:
    body = await _stats(client, admin, country="GB")
    assert body["totals"]["attempts"] == 3
    narrow = await _stats(client, admin, since="2026-03-02T11:00:00Z")
    assert narrow["totals"]["attempts"] == 3


async def test_default_window_is_the_last_day(
    client: AsyncClient, engine: AsyncEngine, admin: dict[str, str]
) -> None:
    await insert_rows(engine, [row()])
    body = (await client.get("/audit/stats", headers=admin)).json()
    assert body["totals"]["attempts"] == 0 and body["totals"]["conversionRate"] is None


async def test_too_many_buckets_or_an_empty_window_are_refused(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    wide = {"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z", "bucket": "minute"}
    response = await client.get("/audit/stats", params=wide, headers=admin)
    assert response.status_code == 400 and response.json()["code"] == "too_many_buckets"
    backwards = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    response = await client.get("/audit/stats", params=backwards, headers=admin)
    assert response.status_code == 400 and response.json()["code"] == "empty_window"
