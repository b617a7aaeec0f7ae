"""`verifyguard simulate` (a local Sinch playing labelled attack scenarios) and
`verifyguard emulate` (a local Sinch Verification REST API that calls VerifyGuard).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import httpx
import typer
import uvicorn

from app.cli.common import DEFAULT_URL, URL_HELP, callback_target
from app.simulator.callback import CallbackTarget
from app.simulator.report import RunInfo, Tally, progress_line, render, report
from app.simulator.rest import create_emulator
from app.simulator.runner import Runner
from app.simulator.scenarios import Attempt, generate
from app.simulator.timing import attacks
from app.simulator.virtual import play_virtual


class Scenario(StrEnum):
    normal = "normal"
    bunched = "bunched"
    surge = "surge"
    range_pumping = "range-pumping"
    number_abuse = "number-abuse"
    slow_pumping = "slow-pumping"
    distributed_pumping = "distributed-pumping"
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
    virtual: str | None = typer.Option(
        None,
        "--virtual",
        metavar="DATABASE_URL",
        help="No server: decide in this process on a virtual clock, on this database "
        "(migrated first; use a fresh one). Durations are simulated seconds.",
    ),
) -> None:
    """Play Sinch against a running VerifyGuard: labelled legit and fraud attempts, a report."""
    attempts = generate(scenario.value, duration=duration, rate=rate, seed=seed)
    if virtual is not None:
        _virtual(virtual, attempts, RunInfo(scenario.value, seed, duration, rate, 0.0), as_json)
        return
    target = callback_target(url, key, secret)
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


def _virtual(database_url: str, attempts: list[Attempt], info: RunInfo, as_json: bool) -> None:
    started = time.monotonic()
    played = asyncio.run(play_virtual(attempts, database_url=database_url))
    info = dataclasses.replace(info, elapsed=time.monotonic() - started)
    document: dict[str, Any] = {**report(played.tally, info), "attacks": attacks(played.answers)}
    if as_json:
        typer.echo(json.dumps(document))
        return
    typer.echo(render(report(played.tally, info)))
    for name, timing in document["attacks"].items():
        typer.echo(
            f"{name}: denied after its first minute "
            f"{timing['denied_after_first_minute_pct']}% of {timing['after_first_minute']}, "
            f"last allowed {timing['last_allowed_after_s']} s after its start"
        )


def _check_reachable(url: str) -> None:
    try:
        httpx.get(url.rstrip("/") + "/healthz", timeout=5)
    except httpx.HTTPError as exc:
        typer.secho(f"could not reach VerifyGuard at {url}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
