"""`verifyguard rules`: list, export, import, validate and dry-run evaluate the policy."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from app.cli.admin_common import cli_actor, fail, fail_with, now, read_document, run_change
from app.cli.rules_backtest import backtest
from app.cli.rules_output import print_decision, print_import, print_rules, summary
from app.errors import AppError
from app.main import counter_backend
from app.rules.model import Policy
from app.rules.starter import starter_document
from app.services.aggregates import Aggregator
from app.services.policy import io as policy_io
from app.services.policy import rules as rules_admin
from app.services.policy.cache import PolicyCache
from app.services.policy.evaluate import evaluate_event
from app.settings import Settings
from app.sinch import samples
from app.sinch.events import VerificationRequestEvent
from app.store.base import create_engine

app = typer.Typer(help="The rules policy: list, export, import, validate, evaluate, backtest.")
app.command()(backtest)


class OutputFormat(StrEnum):
    yaml = "yaml"
    json = "json"


@app.command("list")
def list_() -> None:
    """List rules in evaluation order."""
    print_rules(run_change(rules_admin.list_rules))


@app.command()
def export(
    fmt: OutputFormat = typer.Option(OutputFormat.yaml, "--format", help="yaml or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
) -> None:
    """Export the whole policy (rules, lists, default action) as YAML or JSON."""
    default = Settings().default_action
    document = run_change(lambda conn: policy_io.export_policy(conn, default_action=default))
    text = policy_io.dump_document(document, fmt.value)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(
        f"exported {len(document['rules'])} rules, {len(document['lists'])} lists to {output}"
    )


@app.command()
def starter(
    fmt: OutputFormat = typer.Option(OutputFormat.yaml, "--format", help="yaml or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
) -> None:
    """Print this version's starter policy, to import into a database that has its own
    (its lists are empty: copy yours in from `rules export` before importing)."""
    text = policy_io.dump_document(starter_document(), fmt.value)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote the starter policy to {output}")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="A policy document, YAML or JSON (.json)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would change, change nothing."
    ),
) -> None:
    """Replace the live policy with FILE atomically; unchanged rules keep their revision."""
    document = read_document(file)
    default = Settings().default_action
    result = run_change(
        lambda conn: policy_io.import_policy(
            conn,
            document=document,
            by=cli_actor(),
            now=now(),
            default_action=default,
            dry_run=dry_run,
        )
    )
    print_import(result)


@app.command()
def validate(file: Path = typer.Argument(..., help="A policy document, YAML or JSON.")) -> None:
    """Check FILE without touching the database; exit 1 naming each invalid field."""
    try:
        policy = policy_io.parse_policy(read_document(file))
    except AppError as exc:
        fail_with(exc)
    typer.echo(f"{file}: valid policy: {summary(policy)}")


@app.command()
def evaluate(
    number: str = typer.Option(..., help="E.164 number of the attempt."),
    method: str = typer.Option("sms", help="sms, flashcall, callout, whatsapp, seamless."),
    price: float | None = typer.Option(0.0453, help="Price Sinch quotes."),
    currency: str = typer.Option("EUR", help="Currency of the price."),
    reference: str | None = typer.Option(None, help="Your reference."),
    application: str | None = typer.Option(None, "--app", help="Sinch application key."),
    policy: Path | None = typer.Option(None, help="Candidate policy file instead of the live one."),
    at: datetime | None = typer.Option(None, help="Decide as of this time (UTC if no zone)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
) -> None:
    """Dry-run an attempt: decision, answer and trace, on live counts; changes nothing."""
    event = VerificationRequestEvent.model_validate(
        samples.request_event(
            number=number, method=method, price=price, currency=currency, reference=reference
        )
    )
    candidate = policy_io.parse_policy(read_document(policy)) if policy else None
    moment = now() if at is None else at if at.tzinfo else at.replace(tzinfo=now().tzinfo)
    try:
        result = asyncio.run(_evaluate(event, candidate, application, moment))
    except AppError as exc:
        fail_with(exc)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_decision(result)


async def _evaluate(
    event: VerificationRequestEvent,
    candidate: Policy | None,
    application: str | None,
    moment: datetime,
) -> dict[str, Any]:
    settings = Settings()
    engine = create_engine(settings.database_url)
    aggregator = Aggregator(counter_backend(settings))
    policies = PolicyCache(default_action=settings.default_action, timezone=settings.timezone)
    try:
        async with engine.connect() as conn:
            return await evaluate_event(
                conn,
                event=event,
                candidate=candidate,
                application=application,
                now=moment,
                policies=policies,
                aggregator=aggregator,
                settings=settings,
            )
    except OSError as exc:
        fail(f"cannot reach the database or Redis: {exc}")
    finally:
        await aggregator.close()
        await engine.dispose()
