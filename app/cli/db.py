"""`verifyguard db`: migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli.common import run_with_engine
from app.services.policy.starter import install_starter_policy
from app.settings import Settings
from app.store import hour_triggers
from app.store.migrate import current_revision, head_revision, hour_trigger_problems
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
    """Show the database's schema revision and the one this code needs, and whether the
    triggers that keep counter_hours are in place (exit status 1 when anything is off)."""
    now = run_with_engine(current_revision)
    typer.echo(f"current: {now or 'empty'}  head: {head_revision()}")
    if now != head_revision():
        raise typer.Exit(1)
    found = run_with_engine(hour_trigger_problems)
    typer.echo(f"counter_hours triggers: {'; '.join(found) or 'ok'}")
    if found:
        typer.echo("repair with `verifyguard db repair-triggers`", err=True)
        raise typer.Exit(1)


@app.command("repair-triggers")
def repair_triggers(
    force: bool = typer.Option(
        False, "--force", help="Rebuild counter_hours even when the triggers look right."
    ),
) -> None:
    """Put back the triggers that keep counter_hours in step with counters and rebuild
    counter_hours from counters, in one transaction; writes to counters wait until it
    commits (about as long as migration 0007's backfill: see docs/operations.md)."""
    now = run_with_engine(current_revision)
    if now != head_revision():
        typer.secho(
            f"schema at {now or 'nothing'}, not {head_revision()}: run "
            "`verifyguard db upgrade` (it creates the triggers)",
            err=True,
            fg="red",
        )
        raise typer.Exit(1)
    found = run_with_engine(lambda engine: hour_triggers.repair(engine, force=force))
    if not found and not force:
        typer.echo("counter_hours triggers: ok, nothing to repair")
        return
    typer.echo(
        f"repaired ({'; '.join(found) or 'forced'}): triggers recreated, "
        "counter_hours rebuilt from counters"
    )


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
