"""`verifyguard serve`: uvicorn, after checking the schema is at head."""

from __future__ import annotations

import typer
import uvicorn

from app.cli.common import run_with_engine
from app.store.migrate import SchemaNotCurrentError, require_head


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
) -> None:
    """Serve the callback endpoint and the admin and audit APIs."""
    try:
        run_with_engine(require_head)
    except SchemaNotCurrentError as exc:
        typer.secho(f"refusing to start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
    )
