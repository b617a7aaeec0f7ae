"""`verifyguard serve`: uvicorn, after checking the schema is at head."""

from __future__ import annotations

import os
import secrets
from typing import Any

import typer
import uvicorn

from app.cli.common import run_with_engine
from app.settings import Settings
from app.store.migrate import SchemaNotCurrentError, require_head

CODE_VARIABLE = "VERIFYGUARD_CONSOLE_SIGN_IN_CODE"

# The standard library's event loop, not uvloop. uvloop's libuv accepts one new connection
# per turn of the loop (libuv #3696); when an attack doubles the load, Sinch (or the proxy
# in front) opens hundreds of connections at once and their requests waited unread in the
# kernel's accept queue, out of the deadline's sight, for seconds. asyncio's loop accepts
# what is waiting (up to the backlog) at each wakeup, so admission sees every request and
# sheds what cannot be decided in time. docs/operations.md has the measurements.
EVENT_LOOP = "asyncio"


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
    if Settings().environment == "development":
        _sign_in_link(host, port)
    uvicorn.run(**uvicorn_settings(host, port, workers, worker_timeout))


def uvicorn_settings(host: str, port: int, workers: int, worker_timeout: int) -> dict[str, Any]:
    """What `serve` runs uvicorn with (uvicorn.run's and uvicorn.Config's arguments)."""
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
        "loop": EVENT_LOOP,
    }


def _sign_in_link(host: str, port: int) -> None:
    """In development, as Jupyter does: a link that signs the first visitor in as admin,
    once (the code lives in this run's environment; the app spends it on first use)."""
    code = secrets.token_urlsafe(24)
    os.environ[CODE_VARIABLE] = code
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    typer.secho("VerifyGuard console (development; this link works once):", bold=True)
    typer.echo(f"    http://{shown}:{port}/sign-in/link?code={code}")
