"""`verifyguard simulate` (a local Sinch playing labelled attack scenarios) and
`verifyguard emulate` (a local Sinch Verification REST API that calls VerifyGuard).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from enum import StrEnum

import httpx
import typer
import uvicorn

from app.cli.common import DEFAULT_URL, URL_HELP, callback_target
from app.simulator.callback import CallbackTarget
from app.simulator.report import RunInfo, Tally, progress_line, render, report
from app.simulator.rest import create_emulator
from app.simulator.runner import Runner
from app.simulator.scenarios import Attempt, generate


class Scenario(StrEnum):
    normal = "normal"
    range_pumping = "range-pumping"
    number_abuse = "number-abuse"
    slow_pumping = "slow-pumping"
    mixed = "mixed"


def simulate(
    scenario: Scenario = typer.Option(Scenario.mixed, help="Which traffic to play."),
    duration: float = typer.Option(60.0, min=1, help="Seconds of traffic (real time)."),
    rate: float = typer.Option(10.0, min=0.1, help="Sign-ups per second; attacks scale with it."),
    seed: int = typer.Option(1, help="Same seed, same attempts."),
    url: str = typer.Option(DEFAULT_URL, help=URL_HELP),
    key: str | None = typer.Option(None, help="Sinch application key (default: local app)."),
    secret: str | None = typer.Option(None, help="Sinch application secret (base64)."),
    time_scale: float = typer.Option(60.0, min=1, help="Simulated seconds per real second."),
    concurrency: int = typer.Option(32, min=1, help="Events in flight at most."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Play Sinch against a running VerifyGuard: labelled legit and fraud attempts, a report."""
    target = callback_target(url, key, secret)
    attempts = generate(scenario.value, duration=duration, rate=rate, seed=seed)
    _check_reachable(target.base_url)
    started = time.monotonic()
    runner = asyncio.run(_play(target, attempts, time_scale=time_scale, concurrency=concurrency))
    if runner.refused:
        typer.secho(f"stopped: {runner.refused}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    tally = runner.tally
    info = RunInfo(scenario.value, seed, duration, rate, time.monotonic() - started)
    document = report(tally, info)
    typer.echo(json.dumps(document) if as_json else render(document))
    if tally.total.attempts and tally.total.errors == tally.total.attempts:
        raise typer.Exit(1)


def emulate(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8010, help="Port to bind."),
    url: str = typer.Option(DEFAULT_URL, help=URL_HELP),
    key: str | None = typer.Option(None, help="Sinch application key (default: local app)."),
    secret: str | None = typer.Option(None, help="Sinch application secret (base64)."),
) -> None:
    """Serve a local Sinch Verification REST API (start, report, status) calling VerifyGuard."""
    target = callback_target(url, key, secret)
    typer.echo(f"Sinch Verification API on http://{host}:{port}/verification/v1 -> {target.url}")
    uvicorn.run(create_emulator(target), host=host, port=port, log_level="info")


async def _play(
    target: CallbackTarget, attempts: list[Attempt], *, time_scale: float, concurrency: int
) -> Runner:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        runner = Runner(
            client=client, target=target, time_scale=time_scale, concurrency=concurrency
        )
        await runner.play(attempts, progress=_progress())
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    return runner


def _progress() -> Callable[[Tally, float], None]:
    live = sys.stderr.isatty()
    last = [0.0]

    def show(tally: Tally, elapsed: float) -> None:
        if live:
            sys.stderr.write("\r" + progress_line(tally, elapsed))
        elif elapsed - last[0] >= 5:
            last[0] = elapsed
            sys.stderr.write(progress_line(tally, elapsed) + "\n")
        sys.stderr.flush()

    return show


def _check_reachable(url: str) -> None:
    try:
        httpx.get(url.rstrip("/") + "/healthz", timeout=5)
    except httpx.HTTPError as exc:
        typer.secho(f"could not reach VerifyGuard at {url}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
