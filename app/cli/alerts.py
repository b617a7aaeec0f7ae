"""`verifyguard alerts` (history) and `verifyguard containments` (list, lift, approve, extend)."""

from __future__ import annotations

from enum import StrEnum

import typer

from app.cli.admin_common import cli_actor, fail, now, run_change
from app.rules.durations import parse_duration
from app.rules.model import Action
from app.services.alerts import containments as service
from app.settings import Settings
from app.store.alert_rows import Containment

alerts = typer.Typer(help="Alert history: firings and resolutions.")
containments = typer.Typer(help="Containments: timed blocks created by alerts.")


class Status(StrEnum):
    active = "active"
    proposed = "proposed"
    lifted = "lifted"
    expired = "expired"


@alerts.command("list")
def list_alerts(
    alert: str | None = typer.Option(None, help="Only this alert."),
    limit: int = typer.Option(50, min=1, max=1000),
) -> None:
    """Firings and resolutions, newest first."""
    rows = run_change(
        lambda conn: service.alert_history(conn, alert=alert, since=None, limit=limit)
    )
    typer.echo(
        f"{'at':20}  {'event':15}  {'alert':24}  {'key':8}  {'value':16}  observed/threshold"
    )
    for row in rows:
        limit_text = "-" if row.threshold is None else f"{row.threshold:g}"
        typer.echo(
            f"{row.at:%Y-%m-%d %H:%M:%S}  {row.kind:15}  {row.alert:24}  {row.key:8}  "
            f"{row.value:16}  {row.observed:g}/{limit_text}"
        )


@containments.command("list")
def list_containments(
    status: Status | None = typer.Option(None, help="Only containments in this state."),
    limit: int = typer.Option(50, min=1, max=1000),
) -> None:
    """Containments, newest first."""
    state = status.value if status else None
    rows = run_change(lambda conn: service.list_containments(conn, status=state, limit=limit))
    typer.echo(f"{'id':>5}  {'status':8}  {'key':8}  {'value':16}  {'expires':16}  alert")
    for row in rows:
        typer.echo(_line(row))


@containments.command()
def lift(containment_id: int = typer.Argument(...)) -> None:
    """Lift an active or proposed containment."""
    row = run_change(
        lambda conn: service.lift(
            conn, containment_id=containment_id, by=cli_actor(), now=now(), default=_default()
        )
    )
    typer.echo(_line(row))


@containments.command()
def approve(containment_id: int = typer.Argument(...)) -> None:
    """Approve a proposed containment: it blocks from now for its duration."""
    row = run_change(
        lambda conn: service.approve(
            conn, containment_id=containment_id, by=cli_actor(), now=now(), default=_default()
        )
    )
    typer.echo(_line(row))


@containments.command()
def extend(
    containment_id: int = typer.Argument(...),
    by: str = typer.Option(..., "--for", help="How much longer: 1h, 6h, 1d."),
) -> None:
    """Extend an active containment."""
    try:
        seconds = parse_duration(by)
    except ValueError as exc:
        fail(str(exc))
    row = run_change(
        lambda conn: service.extend(
            conn,
            containment_id=containment_id,
            seconds=seconds,
            by=cli_actor(),
            now=now(),
            default=_default(),
        )
    )
    typer.echo(_line(row))


def _default() -> Action:
    return Settings().default_action


def _line(row: Containment) -> str:
    expires = f"{row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "-"
    return (
        f"{row.id:>5}  {row.status:8}  {row.key:8}  {row.value:16}  {expires:16}  "
        f"{row.alert or row.created_by}"
    )
