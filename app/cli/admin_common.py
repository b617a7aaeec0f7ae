"""Shared by `verifyguard rules`, `lists` and `audit`: the CLI's identity, document files,
error output."""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncConnection

from app.cli.common import run_in_transaction
from app.errors import AppError
from app.services.policy.io import Format, load_document
from app.services.tokens import Principal

T = TypeVar("T")


def cli_actor() -> Principal:
    """Changes made from the CLI are attributed to `cli:<os user>` (there is no token)."""
    return Principal(token_id=None, name=f"cli:{getpass.getuser()}"[:100], role="admin")


def now() -> datetime:
    return datetime.now(UTC)


def run_change(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in one transaction; an expected failure is printed and exits 1."""
    try:
        return run_in_transaction(work)
    except AppError as exc:
        fail_with(exc)


def fail_with(exc: AppError) -> NoReturn:
    typer.secho(f"error: {exc.detail}", fg=typer.colors.RED, err=True)
    for error in exc.errors or []:
        typer.secho(f"  {error['loc'] or '(document)'}: {error['msg']}", err=True)
    raise typer.Exit(1)


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def format_of(path: Path) -> Format:
    return "json" if path.suffix.lower() == ".json" else "yaml"


def read_document(path: Path) -> Any:
    """A JSON (.json) or YAML (anything else) file, parsed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        return load_document(text, format_of(path))
    except AppError as exc:
        fail_with(exc)
