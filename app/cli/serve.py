"""`verifyguard serve`: uvicorn, after checking the schema is at head."""

from __future__ import annotations

import asyncio

import typer
import uvicorn

from app.settings import Settings
from app.store.base import create_engine
from app.store.migrate import SchemaNotCurrentError, require_head


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
) -> None:
    """Serve the callback endpoint and the admin and audit APIs."""
    settings = Settings()
    try:
        asyncio.run(_check_schema(settings.database_url))
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


async def _check_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        await require_head(engine)
    finally:
        await engine.dispose()
