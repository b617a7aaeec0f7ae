"""`verifyguard send`: POST one correctly signed sample event and print the answer."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import httpx
import typer

from app.cli.common import DEFAULT_URL, URL_HELP, callback_target
from app.simulator.callback import refusal
from app.sinch import samples


class EventKind(StrEnum):
    request = "request"
    result = "result"
    delivered = "delivered"


def send(
    event: EventKind = typer.Option(EventKind.request, help="Which Sinch event to send."),
    method: str = typer.Option("sms", help="sms, flashcall, callout, whatsapp, seamless."),
    number: str = typer.Option("+46700000000", help="E.164 number to verify."),
    reference: str | None = typer.Option(None, help="Your reference for the verification."),
    verification_id: str | None = typer.Option(None, "--id", help="Verification id."),
    status: str = typer.Option("SUCCESSFUL", help="Result status (for --event result)."),
    price: float = typer.Option(0.0453, help="Price Sinch quotes (EUR)."),
    url: str | None = typer.Option(None, help=URL_HELP),
    key: str | None = typer.Option(None, help="Sinch application key."),
    secret: str | None = typer.Option(None, help="Sinch application secret (base64)."),
) -> None:
    """Send a signed sample event to a running VerifyGuard, as Sinch would."""
    target = callback_target(url or DEFAULT_URL, key, secret)
    ident = verification_id or samples.new_verification_id()
    payload = _sample(event, ident, number, method, status, price, reference)
    body = json.dumps(payload).encode()
    try:
        response = httpx.post(target.url, content=body, headers=target.headers(body), timeout=10)
    except httpx.HTTPError as exc:
        typer.secho(f"could not reach {target.url}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"POST {target.url}  {payload['event']} id={ident} number={number} method={method}")
    typer.echo(f"-> {response.status_code} {response.text or '(empty body)'}")
    if (reason := refusal(target, response)) is not None:
        typer.secho(reason, fg=typer.colors.RED, err=True)
    if response.status_code >= 400:
        raise typer.Exit(1)


def _sample(
    event: EventKind,
    ident: str,
    number: str,
    method: str,
    status: str,
    price: float,
    reference: str | None,
) -> dict[str, Any]:
    if event is EventKind.request:
        return samples.request_event(
            number=number, method=method, verification_id=ident, price=price, reference=reference
        )
    if event is EventKind.result:
        return samples.result_event(
            verification_id=ident, number=number, status=status, method=method, reference=reference
        )
    return samples.delivered_event(verification_id=ident, number=number)
