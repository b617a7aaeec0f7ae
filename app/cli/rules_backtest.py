"""`verifyguard rules backtest FILE --since 7d`: replay a candidate over stored history here,
with a progress bar, then print the report (or --json). One at a time per deployment, as for
backtests started through the API."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.admin_common import cli_actor, fail, fail_with, now, read_document
from app.cli.backtest_render import print_report
from app.errors import AppError
from app.logs import configure_logging
from app.rules.durations import parse_duration
from app.services.backtest import jobs
from app.settings import Settings
from app.store import backtests as store
from app.store.base import create_engine


def moment(text: str, *, at: datetime) -> datetime:
    """`7d` (that long before `at`) or an ISO time (UTC if no zone)."""
    try:
        return at - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{text!r} is neither a duration (7d, 12h) nor an ISO time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def backtest(
    file: Path = typer.Argument(..., help="The candidate policy, YAML or JSON (.json)."),
    since: str = typer.Option(..., help="Start: a duration ago (7d, 12h) or an ISO time."),
    until: str | None = typer.Option(None, help="End (exclusive); default: now."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
) -> None:
    """What a candidate policy would have done on stored history: flips, caught, false positives,
    money saved. Counts nothing live and changes no rule."""
    configure_logging(json_logs=False, level="WARNING")
    document = read_document(file)
    started = now()
    window = (moment(since, at=started), moment(until, at=started) if until else None)
    try:
        record = asyncio.run(_run(document, window, started, quiet=as_json))
    except AppError as exc:
        fail_with(exc)
    except KeyboardInterrupt:
        fail("interrupted: the backtest was cancelled")
    if record["status"] != "done":
        fail(f"backtest {record['id']} {record['status']}: {record['error'] or ''}".strip())
    if as_json:
        typer.echo(json.dumps(record, indent=2, default=str))
    else:
        print_report(Console(), record)


async def _run(
    document: Any, window: tuple[datetime, datetime | None], started: datetime, *, quiet: bool
) -> dict[str, Any]:
    settings = Settings()
    engine = create_engine(settings.database_url)
    defaults = jobs.Defaults(
        default_action=settings.default_action,
        timezone=settings.timezone,
        bucket_seconds=settings.counter_bucket_seconds,
    )
    try:
        record = await jobs.start(
            engine,
            document=document,
            since=window[0],
            until=window[1],
            by=cli_actor().name,
            now=started,
            defaults=defaults,
        )
        with _bar(quiet) as bar:
            task = bar.add_task("replaying", total=1.0)
            await jobs.execute(engine, record.id, progress=lambda d: bar.update(task, completed=d))
        async with engine.connect() as conn:
            final = await store.get(conn, record.id)
        assert final is not None
        return asdict(final) | {"policy": None}
    except OSError as exc:
        fail(f"cannot reach the database: {exc}")
    finally:
        await engine.dispose()


def _bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=True,
    )
