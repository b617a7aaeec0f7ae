"""`verifyguard simulate`."""

from __future__ import annotations

import typer


def simulate() -> None:
    """Play Sinch against a running VerifyGuard (not yet built)."""
    typer.echo("not yet available")
    raise typer.Exit(1)
