"""`verifyguard purge`."""

from __future__ import annotations

import typer


def purge() -> None:
    """Delete old verifications (not yet built)."""
    typer.echo("not yet available")
    raise typer.Exit(1)
