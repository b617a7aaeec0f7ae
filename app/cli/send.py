"""`verifyguard send`: POST one correctly signed sample event and print the answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum

import httpx
import typer

from app.cli.common import callback_credentials
from app.settings import Settings
from app.sinch import samples
from app.sinch.signature import callback_headers


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
    url: str | None = typer.Option(None, help="Base URL of VerifyGuard."),
    key: str | None = typer.Option(None, help="Sinch application key."),
    secret: str | None = typer.Option(None, help="Sinch application secret (base64)."),
) -> None:
    """Send a signed sample event to a running VerifyGuard, as Sinch would."""
    settings = Settings()
    key, secret = callback_credentials(settings, key, secret)
    ident = verification_id or samples.new_verification_id()
    if event is EventKind.request:
        payload = samples.request_event(
            number=number, method=method, verification_id=ident, price=price, reference=reference
        )
    elif event is EventKind.result:
        payload = samples.result_event(
            verification_id=ident, number=number, status=status, method=method, reference=reference
        )
    else:
        payload = samples.delivered_event(verification_id=ident, number=number)
    body = json.dumps(payload).encode()
    path = settings.signed_path
    headers = callback_headers(
        key=key, secret_b64=secret, body=body, path=path, now=datetime.now(UTC)
    )
    target = (url or "http://127.0.0.1:8000").rstrip("/") + settings.callback_path
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        typer.secho(f"could not reach {target}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"POST {target}  {payload['event']} id={ident} number={number} method={method}")
    typer.echo(f"-> {response.status_code} {response.text or '(empty body)'}")
    if response.status_code >= 400:
        raise typer.Exit(1)
