"""`verifyguard tokens`: create, list and revoke API tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from app.cli.common import run_in_transaction
from app.services.tokens import Role, issue_token
from app.store import tokens as store

app = typer.Typer(help="API tokens for the admin and audit APIs.", no_args_is_help=True)


@app.command()
def create(
    name: str = typer.Argument(..., help="Who or what uses the token."),
    role: str = typer.Option("auditor", help="admin or auditor."),
) -> None:
    """Create a token and print it (shown once, stored hashed)."""
    if role not in ("admin", "auditor"):
        raise typer.BadParameter("role must be admin or auditor", param_hint="--role")
    chosen: Role = "admin" if role == "admin" else "auditor"
    token_id, token = run_in_transaction(
        lambda conn: issue_token(conn, name=name, role=chosen, now=datetime.now(UTC))
    )
    typer.echo(f"token {token_id} ({chosen}) for {name}:")
    typer.echo(token)


@app.command("list")
def list_() -> None:
    """List tokens (never their values)."""
    rows = run_in_transaction(store.list_tokens)
    typer.echo(f"{'id':>4}  {'role':8}  {'created':20}  {'revoked':20}  name")
    for row in rows:
        revoked = row.revoked_at.strftime("%Y-%m-%d %H:%M") if row.revoked_at else "-"
        created = row.created_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{row.id:>4}  {row.role:8}  {created:20}  {revoked:20}  {row.name}")


@app.command()
def revoke(token_id: int = typer.Argument(...)) -> None:
    """Revoke a token; requests with it get 401 from now on."""
    done = run_in_transaction(lambda conn: store.revoke(conn, token_id, now=datetime.now(UTC)))
    if not done:
        typer.secho(f"no active token {token_id}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"token {token_id} revoked")
