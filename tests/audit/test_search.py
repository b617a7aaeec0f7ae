"""Search: every filter, newest first, cursor pages that stay stable while rows arrive."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.rows import BASE, insert_match, insert_rows, minutes, row


async def _ids(client: AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/audit/verifications", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.fixture
async def mixed(engine: AsyncEngine) -> dict[str, str]:
    """Six verifications that each differ from the first in one way."""
    rows = {
        "base": row(requested_at=BASE),
        "later_gb": row(
            requested_at=BASE + minutes(30), number="+447700900123", country="GB", calling_code=44
        ),
        "denied": row(
            requested_at=BASE + minutes(10),
            action="deny",
            reason="number_velocity",
            decided_by="enforce",
            rule_name="velocity",
            rule_revision=3,
            number="+46709999001",
        ),
        "callout_other_app": row(
            requested_at=BASE + minutes(20), method="callout", app_key="app-two"
        ),
        "successful": row(requested_at=BASE + minutes(40), status="SUCCESSFUL"),
        "failed": row(requested_at=BASE + minutes(50), status="FAIL", status_reason="Expired"),
    }
    await insert_rows(engine, list(rows.values()))
    await insert_match(engine, rows["later_gb"]["id"], "pumping_watch", "deny")
    await insert_match(engine, rows["failed"]["id"], "night_watch", "deny")
    return {name: r["id"] for name, r in rows.items()}


CASES = [
    ({}, ["failed", "successful", "later_gb", "callout_other_app", "denied", "base"]),
    ({"since": "2026-03-02T10:30:00Z"}, ["failed", "successful", "later_gb"]),
    ({"until": "2026-03-02T10:20:00+00:00"}, ["denied", "base"]),
    (
        {"since": "2026-03-02T10:10:00", "until": "2026-03-02T10:30:00"},
        ["callout_other_app", "denied"],
    ),
    ({"number": "+447700900123"}, ["later_gb"]),
    ({"number": " 447700900123"}, ["later_gb"]),
    ({"number_prefix": "+4477"}, ["later_gb"]),
    ({"number_prefix": "44"}, ["later_gb"]),
    ({"number_prefix": "+467099"}, ["denied"]),
    ({"number_prefix": "+4679"}, []),
    ({"country": "gb"}, ["later_gb"]),
    ({"method": "callout"}, ["callout_other_app"]),
    ({"action": "deny"}, ["denied"]),
    ({"reason": "number_velocity"}, ["denied"]),
    ({"rule": "velocity"}, ["denied"]),
    ({"rule": "velocity", "mode": "enforce"}, ["denied"]),
    ({"mode": "enforce"}, ["denied"]),
    ({"mode": "shadow"}, ["failed", "later_gb"]),
    ({"rule": "pumping_watch", "mode": "shadow"}, ["later_gb"]),
    ({"rule": "pumping_watch"}, []),
    ({"status": "SUCCESSFUL"}, ["successful"]),
    ({"status": "fail"}, ["failed"]),
    ({"status": "PENDING"}, ["later_gb", "callout_other_app", "denied", "base"]),
    ({"application": "APP-TWO"}, ["callout_other_app"]),
    ({"country": "SE", "action": "allow", "method": "sms"}, ["failed", "successful", "base"]),
]


@pytest.mark.parametrize(("params", "expected"), CASES)
async def test_each_filter_selects_exactly_its_rows(
    client: AsyncClient,
    admin: dict[str, str],
    mixed: dict[str, str],
    params: dict[str, str],
    expected: list[str],
) -> None:
    assert await _ids(client, admin, **params) == [mixed[name] for name in expected]


async def test_pages_stay_stable_while_new_rows_arrive(
    client: AsyncClient, engine: AsyncEngine, auditor: dict[str, str]
) -> None:
    # Pairs share a timestamp so that pages also split ties on requested_at.
    old = [row(requested_at=BASE + minutes(i // 2)) for i in range(25)]
    await insert_rows(engine, old)
    expected = sorted(((r["requested_at"], r["id"]) for r in old), reverse=True)
    seen: list[str] = []
    cursor: str | None = None
    for page in range(4):
        params: dict[str, Any] = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/audit/verifications", params=params, headers=auditor)).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["nextCursor"]
        await insert_rows(engine, [row(requested_at=BASE + minutes(100 + page))])
        if cursor is None:
            break
    assert cursor is None
    assert seen == [ident for _, ident in expected], "each old row once, newest first"


async def test_last_page_has_no_cursor(
    client: AsyncClient, engine: AsyncEngine, admin: dict[str, str]
) -> None:
    await insert_rows(engine, [row(requested_at=BASE + minutes(i)) for i in range(4)])
    body = (await client.get("/audit/verifications", params={"limit": 4}, headers=admin)).json()
    assert len(body["items"]) == 4 and body["nextCursor"] is None


async def test_rows_without_a_request_are_not_listed(
    client: AsyncClient, engine: AsyncEngine, admin: dict[str, str]
) -> None:
    await insert_rows(
        engine, [row(requested_at=None, action=None, status="SUCCESSFUL", created_at=BASE)]
    )
    assert await _ids(client, admin) == []


async def test_bad_cursor_and_unknown_parameters_are_problems(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    bad = await client.get("/audit/verifications", params={"cursor": "xyz"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    typo = await client.get("/audit/verifications", params={"contry": "SE"}, headers=admin)
    assert typo.status_code == 422
    assert typo.headers["content-type"] == "application/problem+json"
    wrong = await client.get("/audit/verifications", params={"mode": "off"}, headers=admin)
    assert wrong.status_code == 422
