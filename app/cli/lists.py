"""`verifyguard lists`: named lists of numbers or prefixes, with expiring entries."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import typer

from app.cli.admin_common import cli_actor, fail, now, run_change
from app.rules.durations import parse_duration
from app.rules.model import ListEntry, NamedList
from app.services.policy import lists as lists_admin

app = typer.Typer(help="Named lists (blocklists, allowlists, timed unblocks).")


class Kind(StrEnum):
    number = "number"
    prefix = "prefix"


@app.command("list")
def list_() -> None:
    """List the named lists with their entry counts."""
    rows = run_change(lambda conn: lists_admin.list_lists(conn, now=now()))
    typer.echo(f"{'name':24}  {'kind':6}  {'entries':>7}  {'active':>6}  description")
    for row in rows:
        typer.echo(
            f"{row.name:24}  {row.kind:6}  {row.entries:>7}  "
            f"{row.active_entries:>6}  {row.description}"
        )


@app.command()
def show(name: str = typer.Argument(...)) -> None:
    """Show a list's entries (expired ones are marked)."""
    listed = run_change(lambda conn: lists_admin.get_list(conn, name=name, now=now()))
    typer.echo(f"{listed.name} ({listed.kind}): {listed.description}")
    for entry in listed.entries:
        expiry = entry.expires_at.strftime("%Y-%m-%d %H:%M") if entry.expires_at else "never"
        state = "" if entry.active else "  (expired)"
        typer.echo(f"  {entry.value:18}  expires {expiry:16}  {entry.note}{state}")


@app.command()
def create(
    name: str = typer.Argument(...),
    kind: Kind = typer.Option(Kind.number, help="number (exact E.164) or prefix (starts-with)."),
    description: str = typer.Option("", help="What the list is for."),
) -> None:
    """Create an empty list."""
    try:
        named = NamedList(name=name, kind=kind.value, description=description)
    except ValueError as exc:
        fail(str(exc))
    run_change(lambda conn: lists_admin.create_list(conn, named=named, by=cli_actor(), now=now()))
    typer.echo(f"list {name} created ({kind.value})")


@app.command()
def delete(name: str = typer.Argument(...)) -> None:
    """Delete a list no rule refers to."""
    run_change(lambda conn: lists_admin.delete_list(conn, name=name, by=cli_actor(), now=now()))
    typer.echo(f"list {name} deleted")


@app.command()
def add(
    name: str = typer.Argument(...),
    values: list[str] = typer.Argument(..., help="Numbers or prefixes."),
    note: str = typer.Option("", help="Why they are listed."),
    expires_at: datetime | None = typer.Option(None, help="Expiry time (UTC if no zone)."),
    expires_in: str | None = typer.Option(None, help="Expiry from now: 30m, 24h, 7d."),
) -> None:
    """Add entries (an existing value takes the new note and expiry)."""
    expiry = _expiry(expires_at, expires_in)
    try:
        entries = [ListEntry(value=v, note=note, expires_at=expiry) for v in values]
    except ValueError as exc:
        fail(str(exc))
    result = run_change(
        lambda conn: lists_admin.add_entries(
            conn, name=name, entries=entries, by=cli_actor(), now=now()
        )
    )
    typer.echo(f"{name}: {result['added']} added, {result['updated']} updated")


@app.command()
def remove(
    name: str = typer.Argument(...), values: list[str] = typer.Argument(..., help="Values.")
) -> None:
    """Remove entries by value."""
    result = run_change(
        lambda conn: lists_admin.remove_entries(
            conn, name=name, values=values, by=cli_actor(), now=now()
        )
    )
    typer.echo(f"{name}: {result['removed']} removed")


@app.command("import-csv")
def import_csv(
    name: str = typer.Argument(...),
    file: Path = typer.Argument(..., help="CSV: value,note,expires_at (header optional)."),
) -> None:
    """Add the entries of a CSV file."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    result = run_change(
        lambda conn: lists_admin.import_csv(conn, name=name, text=text, by=cli_actor(), now=now())
    )
    typer.echo(f"{name}: {result['added']} added, {result['updated']} updated from {file}")


def _expiry(at: datetime | None, within: str | None) -> datetime | None:
    if at is not None and within is not None:
        fail("give --expires-at or --expires-in, not both")
    if within is not None:
        try:
            return now() + timedelta(seconds=parse_duration(within))
        except ValueError as exc:
            fail(str(exc))
    if at is not None and at.tzinfo is None:
        return at.replace(tzinfo=now().tzinfo)
    return at
