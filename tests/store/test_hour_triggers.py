"""The triggers that keep counter_hours (migration 0007): a database without them is refused
at startup and by /readyz, named and with the repair to run; `db repair-triggers` puts them
back and counts again what was written while they were gone. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.cli import cli
from app.main import create_app
from app.store import hour_triggers
from app.store.base import create_engine
from app.store.migrate import HourTriggersMissingError, require_head
from tests.conftest import make_settings

# One trigger per backend, and the statement that loses it.
DROPPED = {
    "sqlite": ("counters_to_hours_insert", "DROP TRIGGER counters_to_hours_insert"),
    "postgresql": (
        "counters_inserted_to_hours",
        "DROP TRIGGER counters_inserted_to_hours ON counters",
    ),
}
HOUR = 1_800_000_000 - 1_800_000_000 % 3600


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:  # the session's PostgreSQL database serves the later tests: triggers back
        await hour_triggers.repair(engine)
        await engine.dispose()


async def _drop(engine: AsyncEngine) -> str:
    name, statement = DROPPED[engine.dialect.name]
    async with engine.begin() as conn:
        await conn.execute(text(statement))
    return name


async def _hour_attempts(engine: AsyncEngine) -> list[tuple[str, int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT key, hour, attempts FROM counter_hours"))
        return sorted(rows.tuples())


async def _count(engine: AsyncEngine, bucket: int, attempts: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO counters (key, bucket, attempts, allowed, pending, spend_micros, "
                "allowed_spend_micros, pending_spend_micros, successes) "
                "VALUES ('k', :bucket, :attempts, 0, 0, 0, 0, 0, 0)"
            ),
            {"bucket": bucket, "attempts": attempts},
        )


async def test_a_migrated_database_has_its_triggers_as_migrated(db: AsyncEngine) -> None:
    async with db.connect() as conn:
        assert await hour_triggers.problems(conn) == []
    await require_head(db)


async def test_startup_refuses_a_database_that_lost_a_trigger(
    db: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    name = await _drop(db)
    app = create_app(make_settings(database_url, tmp_path))
    with pytest.raises(HourTriggersMissingError) as refused:
        async with app.router.lifespan_context(app):
            pass
    message = str(refused.value)
    assert f"trigger {name} missing" in message
    assert "`verifyguard db repair-triggers`" in message


async def test_repair_puts_the_triggers_back_and_counts_what_they_missed(
    db: AsyncEngine,
) -> None:
    await _count(db, HOUR, 2)
    name = await _drop(db)
    await _count(db, HOUR + 60, 5)  # unseen by the hours
    assert await _hour_attempts(db) == [("k", HOUR, 2)]
    assert await hour_triggers.repair(db) == [f"trigger {name} missing"]
    assert await _hour_attempts(db) == [("k", HOUR, 7)]
    await _count(db, HOUR + 120, 1)  # kept by the trigger again
    assert await _hour_attempts(db) == [("k", HOUR, 8)]
    await require_head(db)
    assert await hour_triggers.repair(db) == []  # nothing to do: nothing done


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_disabled_trigger_or_a_changed_function_is_refused_too(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(text("ALTER TABLE counters DISABLE TRIGGER counters_updated_to_hours"))
        await conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION counters_inserted_to_hours() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
            )
        )
    with pytest.raises(HourTriggersMissingError) as refused:
        await require_head(db)
    assert "function counters_inserted_to_hours not as migrated" in str(refused.value)
    assert "trigger counters_updated_to_hours disabled" in str(refused.value)
    await hour_triggers.repair(db)
    await require_head(db)


async def test_readiness_names_a_lost_trigger(client: AsyncClient, db: AsyncEngine) -> None:
    assert (await client.get("/readyz")).status_code == 200
    name = await _drop(db)
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert f"trigger {name} missing" in ready.json()["reason"]
    assert "repair-triggers" in ready.json()["reason"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_reports_refuses_to_serve_and_repairs(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERIFYGUARD_DATABASE_URL", database_url)
    monkeypatch.setattr("uvicorn.run", _started)  # a failure, not a hang
    runner = CliRunner()
    asyncio.run(_drop_and_dispose(database_url))
    current = runner.invoke(cli, ["db", "current"])
    assert current.exit_code == 1
    assert "counters_to_hours_insert missing" in current.output
    serve = runner.invoke(cli, ["serve", "--port", "18401"])
    assert serve.exit_code == 2
    assert "refusing to start" in serve.output and "repair-triggers" in serve.output
    repaired = runner.invoke(cli, ["db", "repair-triggers"])
    assert repaired.exit_code == 0, repaired.output
    assert "counters_to_hours_insert missing" in repaired.output
    assert runner.invoke(cli, ["db", "current"]).exit_code == 0
    again = runner.invoke(cli, ["db", "repair-triggers"])
    assert "nothing to repair" in again.output


def _started(*args: object, **kwargs: object) -> None:
    raise AssertionError("serve started a server on a database without its triggers")


async def _drop_and_dispose(url: str) -> None:
    engine = create_engine(url)
    try:
        await _drop(engine)
    finally:
        await engine.dispose()
