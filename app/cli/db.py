"""`verifyguard db`: migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli.common import run_with_engine
from app.services.policy.starter import install_starter_policy
from app.settings import Settings
from app.store.migrate import current_revision, head_revision
from app.store.migrate import downgrade as alembic_downgrade
from app.store.migrate import upgrade as alembic_upgrade

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the database to the newest schema (or REVISION)."""
    settings = Settings()
    alembic_upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {_redacted(settings.database_url)}")
    # A fresh database gets the starter policy, so the CLI sees what the server will use.
    if revision == "head" and run_with_engine(_install_starter):
        typer.echo("starter policy installed (see `verifyguard rules list`)")


async def _install_starter(engine: AsyncEngine) -> bool:
    return await install_starter_policy(engine, now=datetime.now(UTC))


@app.command()
def downgrade(revision: str = typer.Argument(..., help="e.g. -1 or base")) -> None:
    """Undo migrations down to REVISION."""
    alembic_downgrade(Settings().database_url, revision)
    typer.echo(f"database downgraded to {revision}")


@app.command()
def current() -> None:
    """Show the database's schema revision and the one this code needs."""
    now = run_with_engine(current_revision)
    typer.echo(f"current: {now or 'empty'}  head: {head_revision()}")
    if now != head_revision():
        raise typer.Exit(1)


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
