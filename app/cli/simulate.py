"""`verifyguard simulate` (a local Sinch playing labelled attack scenarios) and
`verifyguard emulate` (a local Sinch Verification REST API that calls VerifyGuard).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
import uvicorn

from app.cli.admin_common import read_document
from app.cli.common import DEFAULT_URL, URL_HELP, callback_target, run_with_engine
from app.gc_settings import server_gc
from app.settings import Settings
from app.simulator.alert_timing import alert_timing, render_alerts
from app.simulator.alerting import install_alerting
from app.simulator.callback import CallbackTarget
from app.simulator.connections import Connections
from app.simulator.pace import PaceDoc
from app.simulator.report import RunInfo, Tally, progress_line, render, report
from app.simulator.rest import create_emulator
from app.simulator.runner import Runner
from app.simulator.scenarios import Attempt, generate
from app.simulator.timing import attacks
from app.simulator.virtual import Position, play_virtual
from app.simulator.webhooks import Clock, Listening, Receiver

T = TypeVar("T")


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
    concurrency: int = typer.Option(
        256,
        min=1,
        help="Keep-alive connections at most: each event goes out on schedule on a free one "
        "(a new one if none is free), as Sinch's do; past this many in flight, events wait "
        "(the report counts them).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    virtual: str | None = typer.Option(
        None,
        "--virtual",
        metavar="DATABASE_URL",
        help="No server: decide in this process on a virtual clock, on this database "
        "(migrated first; use a fresh one). Durations are simulated seconds.",
    ),
    alerts: Path | None = typer.Option(
        None,
        "--alerts",
        help="Put this file's channels and alerts into the live policy first (of the --virtual "
        "database, else of VERIFYGUARD_DATABASE_URL: the server's); rules and lists stay.",
    ),
    webhook_port: int | None = typer.Option(
        None,
        "--webhook-port",
        help="Receive the alert webhooks on 127.0.0.1:PORT (a channel's url must point there) "
        "and report when the first alert and containment arrived after each attack began.",
    ),
    webhook_secret: str | None = typer.Option(
        None,
        "--webhook-secret",
        help="That channel's secret (whsec_…): every delivery's "
        "Standard Webhooks signature is checked against it.",
    ),
) -> None:
    """Play Sinch against a running VerifyGuard: labelled legit and fraud attempts, a report."""
    if (webhook_port is None) != (webhook_secret is None):
        raise typer.BadParameter("--webhook-port and --webhook-secret go together")
    hooks = Hooks(webhook_port, webhook_secret) if webhook_port and webhook_secret else None
    attempts = generate(scenario.value, duration=duration, rate=rate, seed=seed)
    alerting = read_document(alerts) if alerts is not None else None
    info = RunInfo(scenario.value, seed, duration, rate, 0.0)
    if virtual is not None:
        _virtual(virtual, attempts, info, as_json, alerting, hooks)
        return
    if alerting is not None:
        _install(alerting)
    target = callback_target(url, key, secret)
    _check_reachable(target.base_url)
    started = time.monotonic()
    runner, pace = _run_fast(
        _play(target, attempts, time_scale=time_scale, concurrency=concurrency, hooks=hooks)
    )
    if runner.refused:
        typer.secho(f"stopped: {runner.refused}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    tally = runner.tally
    document = report(tally, dataclasses.replace(info, elapsed=time.monotonic() - started))
    document["pace"] = pace
    _print(document, attempts, hooks, as_json)
    if tally.total.attempts and tally.total.errors == tally.total.attempts:
        raise typer.Exit(1)


@dataclasses.dataclass(slots=True)
class Hooks:
    """The webhook receiver a run starts, once its clock is known."""

    port: int
    secret: str
    receiver: Receiver | None = None

    def listen(self, clock: Clock) -> Listening:
        self.receiver = Receiver(secret=self.secret, clock=clock)
        return Listening(self.receiver, port=self.port)


def _install(alerting: Any) -> None:
    settings = Settings()
    report_ = run_with_engine(
        lambda engine: install_alerting(
            engine, alerting, now=datetime.now(UTC), default_action=settings.default_action
        )
    )
    typer.echo(f"alerts installed: policy version {report_.version}", err=True)


def _print(document: Any, attempts: list[Attempt], hooks: Hooks | None, as_json: bool) -> None:
    received = hooks.receiver if hooks is not None else None
    timing = (
        alert_timing(attempts, received.notices, rejected=received.rejected)
        if received is not None
        else None
    )
    if as_json:
        typer.echo(json.dumps({**document, **({"alerts": timing} if timing else {})}))
        return
    typer.echo(render(document))
    for name, attack in document.get("attacks", {}).items():
        typer.echo(
            f"{name}: denied after its first minute "
            f"{attack['denied_after_first_minute_pct']}% of {attack['after_first_minute']}, "
            f"last allowed {attack['last_allowed_after_s']} s after its start"
        )
    if timing is not None:
        typer.echo("\n".join(render_alerts(timing)))


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
    target: CallbackTarget,
    attempts: list[Attempt],
    *,
    time_scale: float,
    concurrency: int,
    hooks: Hooks | None,
) -> tuple[Runner, PaceDoc]:
    origin = [time.monotonic()]
    async with AsyncExitStack() as stack:
        if hooks is not None:
            await stack.enter_async_context(hooks.listen(lambda: time.monotonic() - origin[0]))
        connections = Connections(target, size=concurrency)
        stack.push_async_callback(connections.aclose)
        runner = Runner(send=connections, target=target, time_scale=time_scale)
        origin[0] = time.monotonic()  # the runner's start: attempts' `at` count from here
        await runner.play(attempts, progress=_progress())
        pace = runner.pace.summary(connections=concurrency, waited=connections.waited)
        if hooks is not None:
            await asyncio.sleep(2)  # the last notifications still on their way
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    return runner, pace


def _run_fast(main: Coroutine[Any, Any, T]) -> T:
    """`main` on uvloop where it is installed (it comes with uvicorn[standard]): the
    simulator's event loop is most of its CPU per event. With the server's collector
    settings (app/gc_settings.py): the schedule and the modules frozen out of the
    collector's reach and young collections rarer. With the defaults, a
    `range-pumping --rate 300` run paused in 7 full collections of up to 165 ms (754 ms in
    all, 1.4 s with the younger ones): each pause sent the events due meanwhile in one clump,
    which the server, past its capacity for that moment, partly answered with the fallback
    (docs/simulator.md)."""
    with server_gc():
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is not built for every platform
            return asyncio.run(main)
        return uvloop.run(main)


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


def _virtual(
    database_url: str,
    attempts: list[Attempt],
    info: RunInfo,
    as_json: bool,
    alerting: Any,
    hooks: Hooks | None,
) -> None:
    started = time.monotonic()
    position = Position()

    async def play() -> Any:
        async with AsyncExitStack() as stack:
            if hooks is not None:
                await stack.enter_async_context(hooks.listen(lambda: position.seconds))
            return await play_virtual(
                attempts, database_url=database_url, alerting=alerting, position=position
            )

    played = asyncio.run(play())
    info = dataclasses.replace(info, elapsed=time.monotonic() - started)
    document: dict[str, Any] = {**report(played.tally, info), "attacks": attacks(played.answers)}
    _print(document, attempts, hooks, as_json)


def _check_reachable(url: str) -> None:
    try:
        httpx.get(url.rstrip("/") + "/healthz", timeout=5)
    except httpx.HTTPError as exc:
        typer.secho(f"could not reach VerifyGuard at {url}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
