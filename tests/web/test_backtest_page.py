"""The Backtest page over HTTP, on SQLite and PostgreSQL: an admin starts a backtest of the
live policy with an edit, it runs in its child process to done and the report shows what the
service stored; bad YAML and bad policies start nothing; CSRF and roles are enforced."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime, timedelta

import yaml
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.backtest import jobs
from app.store.backtests import BacktestRecord
from tests.backtest.helpers import DEFAULTS, attempt, rule, store_rows
from tests.web.conftest import BOOTSTRAP, csrf_of, sign_in, stored_token

NG_NUMBER = "+2348031234567"
TEXTAREA = re.compile(r'<textarea id="document" name="document"[^>]*>(.*?)</textarea>', re.S)


def textarea(page: str) -> str:
    found = TEXTAREA.search(page)
    assert found is not None, "the page has no policy editor"
    return html.unescape(found.group(1))


async def recent(engine: AsyncEngine) -> list[BacktestRecord]:
    async with engine.connect() as conn:
        return await jobs.recent(conn, now=datetime.now(UTC))


async def until_ended(engine: AsyncEngine, backtest_id: int) -> BacktestRecord:
    """Poll the service; generous, as starting the child process on a loaded machine can
    take tens of seconds."""
    for _ in range(2400):
        async with engine.connect() as conn:
            record = await jobs.get(conn, backtest_id, now=datetime.now(UTC))
        if record.status != "running":
            return record
        await asyncio.sleep(0.1)
    raise AssertionError("the backtest did not end in 240 s")


def cell(page: str, key: str) -> str:
    found = re.search(rf'data-key="{key}">([^<]*)<', page)
    assert found is not None, key
    return found.group(1)


async def test_an_admin_starts_a_backtest_of_the_live_policy_with_an_edit_and_reads_its_report(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    ng = {"country": "NG", "calling_code": 234, "number": NG_NUMBER}
    await store_rows(
        engine,
        [
            attempt(hour_ago, **ng, price_amount=0.3),
            attempt(hour_ago + timedelta(minutes=1), status="SUCCESSFUL"),
        ],
    )
    await sign_in(client, BOOTSTRAP)
    page = await client.get("/backtest")
    assert page.status_code == 200
    assert "its console view is not wired yet" not in page.text
    live = yaml.safe_load(textarea(page.text))
    assert [r["name"] for r in live["rules"]], "the form is pre-filled with the live rules"
    edited = {
        **live,
        "rules": [rule("block-ng", {"field": "country", "op": "eq", "value": "NG"}, priority=1)]
        + live["rules"],
    }
    started = await client.post(
        "/backtest",
        data={"csrf": csrf_of(page), "document": yaml.safe_dump(edited), "since": "24h"},
    )
    assert started.status_code == 303, started.text
    backtest_id = int(started.headers["location"].split("?")[0].rsplit("/", 1)[1])
    listed = (await client.get("/backtest")).text
    assert f'data-backtest="{backtest_id}"' in listed
    record = await until_ended(engine, backtest_id)
    assert record.status == "done", record.error
    assert record.created_by == "bootstrap"
    result = record.result
    assert result is not None
    assert result["attempts"] == 2 and result["caught"] >= 1
    report = await client.get(f"/backtest/{backtest_id}")
    assert report.status_code == 200
    text = report.text
    assert cell(text, "attempts") == str(result["attempts"])
    assert cell(text, "live") == f"{result['live']['allowed']} / {result['live']['denied']}"
    assert cell(text, "candidate") == (
        f"{result['candidate']['allowed']} / {result['candidate']['denied']}"
    )
    assert cell(text, "allow_to_deny") == str(result["flips"]["allow_to_deny"])
    assert cell(text, "deny_to_allow") == str(result["flips"]["deny_to_allow"])
    assert cell(text, "false_positives") == str(result["false_positives"])
    assert cell(text, "caught") == str(result["caught"])
    assert cell(text, "spend_saved") == "EUR 0.30" and result["spend_saved"] == {"EUR": 0.3}
    block = next(r for r in result["by_rule"] if r["rule"] == "block-ng")
    assert block["would_deny"] == 1
    row = re.search(r'<tr data-rule="block-ng">(.*?)</tr>', text, re.S)
    assert row is not None and re.findall(r'class="num">([^<]*)<', row.group(1)) == [
        "1",
        "1",
        "0",
        str(block["caught"]),
    ]
    assert '<tr data-country="NG">' in text
    sample = result["samples"]["allow_to_deny"][0]
    assert sample["number"] in text and NG_NUMBER not in text  # masked as the API masks it
    assert "block-ng" in text


async def test_invalid_yaml_or_policy_shows_its_errors_and_starts_nothing(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await sign_in(client, BOOTSTRAP)
    csrf = csrf_of(await client.get("/backtest"))
    bad_yaml = await client.post(
        "/backtest", data={"csrf": csrf, "document": "rules: [\n  - {", "since": "7d"}
    )
    assert bad_yaml.status_code == 422
    assert "No backtest was started" in bad_yaml.text
    assert "rules: [" in html.unescape(bad_yaml.text)  # the text is kept for fixing
    bad_policy = await client.post(
        "/backtest",
        data={"csrf": csrf, "document": "rules:\n  - name: x\n    action: explode\n"},
    )
    assert bad_policy.status_code == 422
    assert "policy.rules" in bad_policy.text
    assert await recent(engine) == []


async def test_a_running_backtest_blocks_a_second_start_and_can_be_cancelled(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    running = await jobs.start(  # recorded as running, no child process: it stays running
        engine,
        document={"rules": []},
        since=datetime.now(UTC) - timedelta(hours=1),
        until=None,
        by="someone",
        now=datetime.now(UTC),
        defaults=DEFAULTS,
    )
    await sign_in(client, BOOTSTRAP)
    page = await client.get("/backtest")
    assert 'data-running="1"' in page.text
    assert f'aria-label="Cancel backtest {running.id}"' in page.text
    csrf = csrf_of(page)
    second = await client.post("/backtest", data={"csrf": csrf, "document": "rules: []\n"})
    assert second.status_code == 409
    assert "A backtest is already running" in second.text
    assert [r.id for r in await recent(engine)] == [running.id]
    cancelled = await client.post(f"/backtest/{running.id}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 303
    [stored] = await recent(engine)
    assert stored.cancel_requested


async def test_changes_need_the_csrf_token(client: AsyncClient, engine: AsyncEngine) -> None:
    await sign_in(client, BOOTSTRAP)
    await client.get("/backtest")
    response = await client.post("/backtest", data={"document": "rules: []\n", "since": "24h"})
    assert response.status_code == 403
    assert "stale or forged" in response.text
    forged = await client.post(
        "/backtest", data={"csrf": "0" * 32, "document": "rules: []\n", "since": "24h"}
    )
    assert forged.status_code == 403
    assert await recent(engine) == []


async def test_an_auditor_reads_the_list_and_a_report_but_changes_nothing(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    record = await jobs.start(
        engine,
        document={"rules": []},
        since=datetime.now(UTC) - timedelta(hours=1),
        until=None,
        by="admin-ann",
        now=datetime.now(UTC),
        defaults=DEFAULTS,
    )
    assert await jobs.execute(engine, record.id) == "done"
    _, token = await stored_token(engine, "auditor-bob", "auditor")
    await sign_in(client, token)
    page = await client.get("/backtest")
    assert page.status_code == 200
    assert f'data-backtest="{record.id}"' in page.text and "admin-ann" in page.text
    assert 'name="document"' not in page.text and "Start backtest" not in page.text
    report = await client.get(f"/backtest/{record.id}")
    assert report.status_code == 200 and 'data-key="attempts"' in report.text
    csrf = csrf_of(page)  # the sign-out form's
    start = await client.post("/backtest", data={"csrf": csrf, "document": "rules: []\n"})
    assert start.status_code == 403
    cancel = await client.post(f"/backtest/{record.id}/cancel", data={"csrf": csrf})
    assert cancel.status_code == 403
    assert [r.id for r in await recent(engine)] == [record.id]
    assert (await client.get("/backtest/999999")).status_code == 404
