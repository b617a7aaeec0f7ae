"""`verifyguard alerts list` and `verifyguard containments list|approve|extend|lift` on SQLite."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner, Result

from app.cli import cli
from app.store.base import create_engine
from app.store.models import AlertEventRow, ContainmentRow

runner = CliRunner()
NOW = datetime.now(UTC)


@pytest.fixture
def database(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setenv("VERIFYGUARD_DATABASE_URL", url)
    monkeypatch.delenv("VERIFYGUARD_REDIS_URL", raising=False)
    return url


def run(*args: str) -> Result:
    return runner.invoke(cli, list(args))


async def _seed(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(ContainmentRow).values(
                key="range",
                value="+46701230",
                alert="range-attempts",
                status="proposed",
                duration_seconds=3600,
                created_at=NOW,
                created_by="alert:range-attempts",
                updated_at=NOW,
            )
        )
        await conn.execute(
            insert(AlertEventRow).values(
                kind="alert.firing",
                alert="range-attempts",
                key="range",
                value="+46701230",
                metric="attempts",
                observed=6,
                threshold=5,
                window="10m",
                containment_id=1,
                at=NOW,
            )
        )
    await engine.dispose()


def test_list_approve_extend_lift(database: str) -> None:
    asyncio.run(_seed(database))
    listed = run("containments", "list")
    assert listed.exit_code == 0, listed.output
    assert "proposed" in listed.output and "+46701230" in listed.output
    assert "alert.firing" in run("alerts", "list").output

    approved = run("containments", "approve", "1")
    assert approved.exit_code == 0, approved.output
    assert "active" in approved.output
    expires = NOW + timedelta(hours=3)
    extended = run("containments", "extend", "1", "--for", "2h")
    assert extended.exit_code == 0 and f"{expires:%Y-%m-%d}" in extended.output
    lifted = run("containments", "lift", "1")
    assert lifted.exit_code == 0 and "lifted" in lifted.output
    again = run("containments", "lift", "1")
    assert again.exit_code == 1 and "cannot lift a containment that is lifted" in again.output
    assert "lifted" in run("containments", "list", "--status", "lifted").output
