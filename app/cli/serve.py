"""`verifyguard serve`: uvicorn, after checking the schema is at head."""

from __future__ import annotations

import os
import secrets
from typing import Any

import typer
import uvicorn

from app.cli import listen
from app.cli.common import run_with_engine
from app.settings import Settings
from app.store.migrate import SchemaNotCurrentError, require_head

CODE_VARIABLE = "VERIFYGUARD_CONSOLE_SIGN_IN_CODE"


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes."),
    worker_timeout: int = typer.Option(
        60,
        min=1,
        help="Seconds a worker may take to answer its supervisor's health check, start-up "
        "included, before it is replaced (uvicorn's own 5 s replaced slow-starting or busy "
        "workers over and over on a loaded host).",
    ),
) -> None:
    """Serve the callback endpoint, the admin and audit APIs and the console."""
    try:
        run_with_engine(require_head)
    except SchemaNotCurrentError as exc:
        typer.secho(f"refusing to start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    try:
        sockets = listen.listening_sockets(host, port)
    except OSError as exc:
        typer.secho(
            f"cannot listen on {host}:{port}: {exc.strerror}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1) from None
    if Settings().environment == "development":
        _sign_in_link(host, port)
    config = uvicorn.Config(**uvicorn_settings(host, port, workers, worker_timeout))
    try:
        listen.run(config, sockets)
    except listen.StartupFailed:
        raise typer.Exit(3) from None  # uvicorn's exit status for it


def uvicorn_settings(host: str, port: int, workers: int, worker_timeout: int) -> dict[str, Any]:
    """What `serve` configures uvicorn with (uvicorn.Config's arguments): on uvloop (the
    "auto" loop), on the sockets of app/cli/listen.py."""
    return {
        "app": "app.main:create_app",
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "timeout_worker_healthcheck": worker_timeout,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": True,
    }


def _sign_in_link(host: str, port: int) -> None:
    """In development, as Jupyter does: a link that signs the first visitor in as admin,
    once (the code lives in this run's environment; the app spends it on first use)."""
    code = secrets.token_urlsafe(24)
    os.environ[CODE_VARIABLE] = code
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    typer.secho("VerifyGuard console (development; this link works once):", bold=True)
    typer.echo(f"    http://{shown}:{port}/sign-in/link?code={code}")
