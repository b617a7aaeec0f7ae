"""`verifyguard audit`: show, search, export and stats straight from the database; rollup.

Each command is logged in the audit log as `cli:<user>`; numbers are whole unless --mask.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.api.audit import stats_for
from app.api.audit_schemas import StatsQuery
from app.cli import audit_render as render
from app.cli.admin_common import cli_actor
from app.cli.common import run_with_engines
from app.errors import AppError, error_detail
from app.services.audit import export as audit_export
from app.services.audit import queries as audit
from app.services.audit import rollup as stats_rollup
from app.services.audit.documents import TimelineDoc, VerificationDoc
from app.services.audit.queries import AuditContext, AuditFilter

app = typer.Typer(help="Look up, search, export and count verifications.", no_args_is_help=True)
T = TypeVar("T")

FILTER_HELP = (
    "KEY=VALUE, repeatable. Keys: since, until, number, number_prefix, country, method, "
    "action, reason, rule, mode, status, application."
)
FilterOpt = typer.Option([], "--filter", "-f", help=FILTER_HELP)
MaskOpt = typer.Option(False, "--mask", help="Mask numbers as auditors see them.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")


def _context(command: str, query: dict[str, Any], *, mask: bool) -> AuditContext:
    now = datetime.now(UTC)
    return AuditContext(cli_actor(), "CLI", f"audit {command}", query, now, reveal=not mask)


def _read(ctx: AuditContext, read: Callable[[AsyncConnection, AuditContext], Awaitable[T]]) -> T:
    """`read` beside the writer, then logged (`read_apart`: a server deciding on the same
    SQLite file is not held back by a long read of this process)."""
    return _guarded(
        lambda: run_with_engines(lambda writer, reader: audit.read_apart(writer, reader, ctx, read))
    )


def _guarded(work: Callable[[], T]) -> T:
    """`work`'s result; an error of the app's printed, and the command failed."""
    try:
        return work()
    except AppError as exc:
        typer.secho(exc.detail, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _stats_query(pairs: list[str], **extra: Any) -> StatsQuery:
    """Parse KEY=VALUE filters with the same rules (and errors) as the HTTP API."""
    values: dict[str, Any] = dict(extra)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--filter")
        values[key.strip().replace("-", "_")] = value
    try:
        return StatsQuery(**values)
    except ValidationError as exc:
        problems = [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        raise typer.BadParameter(error_detail(problems), param_hint="--filter") from None


def _filters(pairs: list[str]) -> AuditFilter:
    return _stats_query(pairs).to_filter()


@app.command()
def show(
    verification_id: str = typer.Argument(None, help="The Sinch verification id."),
    reference: str = typer.Option(None, help="Look up the newest with this reference."),
    number: str = typer.Option(None, help="Look up the newest for this number (with --method)."),
    method: str = typer.Option("sms", help="Method for --number."),
    timeline: bool = typer.Option(False, "--timeline", "-t", help="Also show the timeline."),
    mask: bool = MaskOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one verification: by id, by --reference, or by --number and --method."""
    if not (verification_id or reference or number):
        raise typer.BadParameter("give an id, --reference or --number")
    asked = {"id": verification_id, "reference": reference, "number": number, "method": method}
    ctx = _context("show", {k: v for k, v in asked.items() if v}, mask=mask)

    async def work(
        conn: AsyncConnection, quiet: AuditContext
    ) -> tuple[VerificationDoc, TimelineDoc | None]:
        found = await audit.lookup(
            conn=conn,
            ctx=quiet,
            verification_id=verification_id,
            reference=None if verification_id else reference,
            method=method.lower() if number and not verification_id else None,
            number=number if not verification_id else None,
        )
        if not timeline:
            return found, None
        return found, await audit.timeline(conn=conn, ctx=quiet, verification_id=found["id"])

    found, shown = _read(ctx, work)
    if as_json:
        typer.echo(json.dumps(shown or found, indent=2, default=str))
    elif shown:
        render.verification(shown["verification"])
        render.timeline(shown["events"])
    else:
        render.verification(found)


@app.command()
def search(
    filters: list[str] = FilterOpt,
    limit: int = typer.Option(20, min=1, max=500),
    cursor: str = typer.Option(None, help="Continue after a previous page."),
    mask: bool = MaskOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List verifications, newest first, a page at a time."""
    chosen = _filters(filters)
    ctx = _context("search", {"filters": filters, "limit": limit, "cursor": cursor}, mask=mask)
    page = _read(
        ctx,
        lambda conn, quiet: audit.search(
            conn=conn, ctx=quiet, filters=chosen, cursor=cursor, limit=limit
        ),
    )
    if as_json:
        typer.echo(json.dumps(page, indent=2, default=str))
        return
    render.page(page["items"])
    if page["nextCursor"]:
        typer.echo(f"more: --cursor {page['nextCursor']}")


@app.command()
def export(
    filters: list[str] = FilterOpt,
    fmt: str = typer.Option("csv", "--format", help="csv or ndjson."),
    output: Path = typer.Option(None, "--output", "-o", help="File to write (default stdout)."),
    mask: bool = MaskOpt,
) -> None:
    """Export matching verifications as CSV or NDJSON, newest first."""
    if fmt not in ("csv", "ndjson"):
        raise typer.BadParameter("csv or ndjson", param_hint="--format")
    chosen = _filters(filters)
    ctx = _context("export", {"filters": filters, "format": fmt}, mask=mask)

    async def work(writer: AsyncEngine, reader: AsyncEngine) -> int:
        out = await audit_export.export(
            writer=writer,
            connect=reader.connect,
            ctx=ctx,
            filters=chosen,
            fmt="csv" if fmt == "csv" else "ndjson",
        )
        return await _write(out.chunks, output)

    written = _guarded(lambda: run_with_engines(work))
    typer.secho(f"{written:,} bytes written", err=True)


async def _write(chunks: AsyncIterator[bytes], output: Path | None) -> int:
    written = 0
    sink_cm = output.open("wb") if output else nullcontext(sys.stdout.buffer)
    with sink_cm as sink:
        async for chunk in chunks:
            sink.write(chunk)
            written += len(chunk)
    return written


@app.command()
def stats(
    filters: list[str] = FilterOpt,
    bucket: str = typer.Option(None, help="minute, hour or day."),
    group_by: str = typer.Option(None, help="country, method, rule or reason."),
    range_digits: int = typer.Option(6, help="Digits in a denied number range."),
    mask: bool = MaskOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Attempts, decisions, outcomes and spend per time bucket and group (default: last 24 h)."""
    extra = {"bucket": bucket, "group_by": group_by, "range_digits": range_digits}
    query = _stats_query(filters, **{k: v for k, v in extra.items() if v is not None})
    ctx = _context("stats", {"filters": filters, **extra}, mask=mask)
    result = _guarded(
        lambda: run_with_engines(
            lambda writer, reader: stats_for(query, writer=writer, reader=reader, ctx=ctx)
        )
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        render.stats(result)


@app.command()
def rollup() -> None:
    """Roll up every settled hour for stats now (the server does it every few minutes)."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    rolled = run_with_engines(
        lambda writer, reader: stats_rollup.roll_settled(writer, reader, now=now)
    )
    typer.echo(f"rolled up {rolled} hours in {time.perf_counter() - started:.1f} s")
