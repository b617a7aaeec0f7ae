"""`verifyguard purge`: delete old verifications, and optionally anonymise old numbers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli.common import run_with_engine
from app.services.audit import retention
from app.settings import Settings

_AGE = re.compile(r"^(\d+)([hdw])$")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_age(value: str) -> timedelta:
    """'90d', '12w', '36h'."""
    match = _AGE.match(value.strip().lower())
    if match is None or int(match.group(1)) < 1:
        raise typer.BadParameter(f"{value!r}: use a number of hours, days or weeks: 36h, 90d, 12w")
    return int(match.group(1)) * _UNIT[match.group(2)]


def purge(
    older_than: str | None = typer.Option(
        None, "--older-than", help="Delete verifications older than this (90d, 12w, 36h)."
    ),
    anonymize_after: str | None = typer.Option(
        None, "--anonymize-after", help="Replace numbers older than this with a keyed hash."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count, delete nothing."),
    batch: int = typer.Option(1000, min=1, help="Rows per transaction."),
) -> None:
    """Retention: delete old verifications, their callbacks and matches, and old counters."""
    if older_than is None and anonymize_after is None:
        raise typer.BadParameter("give --older-than and/or --anonymize-after")
    settings = Settings()
    key = settings.anonymize_key
    if anonymize_after is not None and key is None:
        raise typer.BadParameter("--anonymize-after needs VERIFYGUARD_ANONYMIZE_KEY")
    older = parse_age(older_than) if older_than else None
    after = parse_age(anonymize_after) if anonymize_after else None
    secret = key.get_secret_value().encode() if key else b""
    run_with_engine(
        lambda engine: _run(engine, settings, older, after, secret, dry_run=dry_run, batch=batch)
    )


async def _run(
    engine: AsyncEngine,
    settings: Settings,
    older: timedelta | None,
    after: timedelta | None,
    key: bytes,
    *,
    dry_run: bool,
    batch: int,
) -> None:
    now = datetime.now(UTC)
    if after is not None:
        count = await retention.anonymize(
            engine, older_than=after, key=key, now=now, dry_run=dry_run, batch=batch
        )
        typer.echo(f"{'would anonymise' if dry_run else 'anonymised'} {count} verifications")
    if older is not None:
        purged = await retention.purge(
            engine,
            older_than=older,
            counter_retention=timedelta(seconds=settings.counter_retention_seconds),
            now=now,
            dry_run=dry_run,
            batch=batch,
        )
        verb = "would delete" if dry_run else "deleted"
        for table in ("verifications", "matches", "callbacks", "counters"):
            typer.echo(f"{verb} {purged.rows.get(table, 0)} {table}")
