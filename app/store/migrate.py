"""Alembic from code: upgrade to head, and tell whether a database is at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import hour_triggers

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


class SchemaNotCurrentError(RuntimeError):
    pass


async def _require_revision(engine: AsyncEngine) -> None:
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotCurrentError(
            f"database schema is at {current or 'nothing'}, this VerifyGuard needs {head}: "
            "run `verifyguard db upgrade`"
        )


class HourTriggersMissingError(SchemaNotCurrentError):
    pass


async def require_head(engine: AsyncEngine) -> None:
    """At head, and with the triggers that keep `counter_hours` (not part of the revision:
    a table restored or recreated by hand loses them, and long windows under-count)."""
    await _require_revision(engine)
    found = await hour_trigger_problems(engine)
    if found:
        raise HourTriggersMissingError(
            "the triggers that keep counter_hours in step with counters are not as "
            f"migration 0007 made them ({'; '.join(found)}): windows longer than an hour "
            "would under-count. Run `verifyguard db repair-triggers` (puts them back and "
            "rebuilds counter_hours from counters; writes to counters wait while it runs)"
        )


async def hour_trigger_problems(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return await hour_triggers.problems(conn)
