"""The `verifyguard` command: serve, db, send, and the admin groups."""

from __future__ import annotations

import typer

from app.cli import alerts, audit, db, lists, purge, rules, send, serve, simulate, tokens

cli = typer.Typer(
    help="VerifyGuard: a guard for Sinch Verification callbacks.", no_args_is_help=True
)
cli.command("serve")(serve.serve)
cli.command("send")(send.send)
cli.add_typer(db.app, name="db")
cli.add_typer(rules.app, name="rules")
cli.add_typer(lists.app, name="lists")
cli.add_typer(tokens.app, name="tokens")
cli.add_typer(audit.app, name="audit")
cli.add_typer(alerts.alerts, name="alerts")
cli.add_typer(alerts.containments, name="containments")
cli.command("simulate")(simulate.simulate)
cli.command("emulate")(simulate.emulate)
cli.command("purge")(purge.purge)


def main() -> None:
    cli()
