"""`verifyguard audit` against a real database: show, search, export, stats; all logged."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.store.base import create_engine
from app.store.stats_rollup import settled_until
from tests.audit.rows import BASE, audit_log, insert_rows, minutes, row


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VERIFYGUARD_DATABASE_URL", database_url)
    return database_url


def _seed(url: str, rows: list[dict[str, Any]]) -> None:
    async def run() -> None:
        engine = create_engine(url)
        await insert_rows(engine, rows)
        await engine.dispose()

    asyncio.run(run())


def _log(url: str) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        engine = create_engine(url)
        try:
            return await audit_log(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, ["audit", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_show_prints_the_verification_and_its_decision(cli_db: str) -> None:
    _seed(cli_db, [row(id="v-cli-1", action="deny", reason="country_blocked", rule_name="geo")])
    out = _invoke("show", "v-cli-1")
    assert "v-cli-1" in out and "country_blocked" in out and "+46701234233" in out
    masked = _invoke("show", "v-cli-1", "--mask", "--json")
    assert json.loads(masked)["identity"]["endpoint"] == "+4670****233"
    assert [e["path"] for e in _log(cli_db)] == ["audit show", "audit show"]


def test_show_unknown_id_fails_cleanly(cli_db: str) -> None:
    result = CliRunner().invoke(cli, ["audit", "show", "nope"])
    assert result.exit_code == 1
    assert "No verification" in result.output


def test_search_filters_and_pages(cli_db: str) -> None:
    _seed(cli_db, [row(requested_at=BASE + minutes(i), country="GB") for i in range(3)])
    _seed(cli_db, [row(id="v-se-only")])
    out = _invoke("search", "-f", "country=SE")
    assert "v-se-only" in out and "GB" not in out
    paged = json.loads(_invoke("search", "--limit", "2", "--json"))
    assert len(paged["items"]) == 2 and paged["nextCursor"]
    rest = json.loads(_invoke("search", "--limit", "2", "--json", "--cursor", paged["nextCursor"]))
    assert len(rest["items"]) == 2 and rest["nextCursor"] is None


def test_search_rejects_a_bad_filter(cli_db: str) -> None:
    result = CliRunner().invoke(cli, ["audit", "search", "-f", "mode=off"])
    assert result.exit_code != 0
    assert "mode" in result.output


def test_export_writes_a_file(cli_db: str, tmp_path: Path) -> None:
    _seed(cli_db, [row(requested_at=BASE + minutes(i)) for i in range(3)])
    target = tmp_path / "out.ndjson"
    _invoke("export", "--format", "ndjson", "-o", str(target))
    lines = target.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["number"] == "+46701234233"


def test_stats_prints_tables(cli_db: str) -> None:
    _seed(cli_db, [row(), row(action="deny", reason="number_velocity")])
    window = ["-f", "since=2026-03-02T00:00:00Z", "-f", "until=2026-03-03T00:00:00Z"]
    out = _invoke("stats", *window, "--group-by", "reason")
    assert "number_velocity" in out and "TOTAL" in out
    data = json.loads(_invoke("stats", *window, "--bucket", "hour", "--json"))
    assert data["totals"]["attempts"] == 2 and data["totals"]["denied"] == 1


def test_stats_json_keeps_its_key_order(cli_db: str) -> None:
    """The CLI prints the service's document as built: `group` after the spend, no bucket or
    group in the totals."""
    _seed(cli_db, [row(), row(action="deny", reason="number_velocity")])
    window = ["-f", "since=2026-03-02T00:00:00Z", "-f", "until=2026-03-03T00:00:00Z"]
    data = json.loads(_invoke("stats", *window, "--group-by", "reason", "--json"))
    counts = ["attempts", "allowed", "denied", "shadowWouldDeny", "completed", "successful"]
    spend = ["spendAllowed", "spendDenied"]
    assert list(data) == [
        "since",
        "until",
        "bucket",
        "groupBy",
        "rows",
        "totals",
        "topDeniedRanges",
        "shadowRules",
    ]
    assert list(data["rows"][0]) == ["bucket", *counts, *spend, "group", "conversionRate"]
    assert list(data["totals"]) == [*counts, *spend, "conversionRate"]


def test_rollup_rolls_the_settled_hours_once(cli_db: str) -> None:
    _seed(cli_db, [row(requested_at=BASE + minutes(m)) for m in (5, 65, 185)])
    hours = {(settled_until(datetime.now(UTC)) - BASE) // timedelta(hours=1)}
    out = _invoke("rollup")
    hours.add((settled_until(datetime.now(UTC)) - BASE) // timedelta(hours=1))
    assert int(out.split()[2]) in hours  # every settled hour since the first request
    assert _invoke("rollup").startswith("rolled up 0 hours")
    totals = json.loads(_invoke("stats", "-f", "since=2026-03-02T00:00:00Z", "--json"))
    assert totals["totals"]["attempts"] == 3
