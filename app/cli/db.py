"""`verifyguard db`: migrations."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer

from app.services.policy.starter import install_starter_policy
from app.settings import Settings
from app.store.base import create_engine
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
    if revision == "head" and asyncio.run(_install_starter(settings.database_url)):
        typer.echo("starter policy installed (see `verifyguard rules list`)")


async def _install_starter(url: str) -> bool:
    """A fresh database gets the starter policy, so the CLI sees what the server will use."""
    engine = create_engine(url)
    try:
        return await install_starter_policy(engine, now=datetime.now(UTC))
    finally:
        await engine.dispose()


@app.command()
def downgrade(revision: str = typer.Argument(..., help="e.g. -1 or base")) -> None:
    """Undo migrations down to REVISION."""
    alembic_downgrade(Settings().database_url, revision)
    typer.echo(f"database downgraded to {revision}")


@app.command()
def current() -> None:
    """Show the database's schema revision and the one this code needs."""
    settings = Settings()

    async def read() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    now = asyncio.run(read())
    typer.echo(f"current: {now or 'empty'}  head: {head_revision()}")
    if now != head_revision():
        raise typer.Exit(1)


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
