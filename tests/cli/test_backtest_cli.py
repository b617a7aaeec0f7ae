"""`verifyguard rules backtest` against a SQLite file: the report and --json."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import cli
from app.store.base import create_engine
from tests.backtest.helpers import attempt, store_rows

runner = CliRunner()
CANDIDATE = {
    "rules": [
        {
            "name": "block-ng",
            "action": "deny",
            "reason": "country_blocked",
            "when": {"field": "country", "op": "eq", "value": "NG"},
        }
    ]
}


@pytest.fixture
def database(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setenv("VERIFYGUARD_DATABASE_URL", url)
    monkeypatch.delenv("VERIFYGUARD_REDIS_URL", raising=False)
    now = datetime.now(UTC)
    ng = {"country": "NG", "calling_code": 234, "number": "+2348031234567"}
    rows = [
        attempt(now - timedelta(days=2), **ng, price_amount=0.3),
        attempt(now - timedelta(days=1), **ng, status="SUCCESSFUL", price_amount=0.1),
        attempt(now - timedelta(hours=3)),
        attempt(now - timedelta(days=9), **ng),  # outside --since 7d
    ]

    async def fill() -> None:
        engine = create_engine(url)
        await store_rows(engine, rows)
        await engine.dispose()

    asyncio.run(fill())
    return url


def test_backtest_prints_a_report_and_json(database: str, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(yaml.safe_dump(CANDIDATE))
    report = runner.invoke(cli, ["rules", "backtest", str(candidate), "--since", "7d"])
    assert report.exit_code == 0, report.output
    assert "attempts 3  allow→deny 2  deny→allow 0  caught 1  false positives 1" in report.output
    assert "money saved 0.30 EUR  lost 0.10 EUR" in report.output
    assert "block-ng" in report.output

    as_json = runner.invoke(cli, ["rules", "backtest", str(candidate), "--since", "7d", "--json"])
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.stdout)["result"]
    assert result["candidate"] == {"allowed": 1, "denied": 2}
    assert result["spend_saved"] == {"EUR": 0.3}


def test_backtest_refuses_an_invalid_candidate(database: str, tmp_path: Path) -> None:
    candidate = tmp_path / "bad.json"
    candidate.write_text(json.dumps({"rules": [{"name": "x"}]}))
    answer = runner.invoke(cli, ["rules", "backtest", str(candidate), "--since", "7d"])
    assert answer.exit_code == 1
    assert "policy.rules.0.action: Field required" in answer.output
