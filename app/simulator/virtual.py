"""Play a scenario through VerifyGuard in this process, on a virtual clock.

Every event is handed to the intake as a delivery received at its simulated time, one
after another in time order: minutes of traffic run in seconds, deterministically, and the
results arrive at their real delays (8 to 55 s for most users), not compressed. The runtime is
the one `verifyguard serve` builds, on the given database (migrated first); only the HTTP
layer and its signature check are left out, and the background baseline refresh and the
alert jobs (evaluation, the containment watcher, delivery of the notifications over real
HTTP) run on the virtual clock, each at its configured interval. For measuring a policy, not
latency: the decision deadline is 10 s, and the clock runs ahead of the wall clock.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.logs import configure_logging
from app.main import build_runtime, close_runtime, open_runtime
from app.services.baselines import refresh_live
from app.services.intake.deliveries import Delivery
from app.settings import Settings
from app.simulator.alerting import install_alerting
from app.simulator.report import Tally
from app.simulator.runner import RECEIPT_AFTER
from app.simulator.scenarios import Attempt
from app.sinch import samples
from app.store.migrate import upgrade

APP_KEY = "virtual-sinch"
AHEAD = timedelta(days=1)


@dataclass(order=True, slots=True)
class _Event:
    at: float
    seq: int
    attempt: Attempt = field(compare=False)
    ident: str = field(compare=False)
    kind: str = field(compare=False)  # request | receipt | result


@dataclass(slots=True)
class Played:
    """The tally, and each attempt with the answer it got, in time order."""

    tally: Tally = field(default_factory=Tally)
    answers: list[tuple[Attempt, str | None]] = field(default_factory=list)


@dataclass(slots=True)
class Position:
    """How far into the run the virtual clock is, in seconds (the webhook receiver's clock)."""

    seconds: float = 0.0


def virtual_settings(database_url: str, spool_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        environment="test",
        sinch_apps={APP_KEY: "c2VjcmV0"},
        decision_deadline_ms=10_000,
        # A loaded machine must not make the outage probe declare the database away.
        database_connect_timeout_seconds=60,
        spool_dir=spool_dir,
        stats_rollup_interval_seconds=0,
        log_level="WARNING",
    )


async def play_virtual(
    attempts: list[Attempt],
    *,
    database_url: str,
    start: datetime | None = None,
    alerting: Any = None,
    position: Position | None = None,
) -> Played:
    """Migrate the database, put `alerting` (channels and alerts) into its policy, then play
    `attempts` from `start` (default: now) on, advancing `position`."""
    configure_logging(json_logs=False, level="WARNING")
    await asyncio.to_thread(upgrade, database_url)
    with tempfile.TemporaryDirectory() as spool:
        settings = virtual_settings(database_url, Path(spool))
        runtime = build_runtime(settings)
        # A day ahead of the wall clock: the decision deadline counts from receipt, and a
        # virtual receipt in the past would look queued (a 10-minute lead ran out on a loaded
        # machine: PostgreSQL runs fell behind it and answered with the fallback).
        clock = start or datetime.now(UTC) + AHEAD
        await open_runtime(runtime, now=clock)
        try:
            if alerting is not None:
                await install_alerting(
                    runtime.engine, alerting, now=clock, default_action=settings.default_action
                )
            return await _play(runtime, attempts, clock, position or Position())
        finally:
            await runtime.alerts.stop()
            await close_runtime(runtime)


async def _play(runtime: Any, attempts: list[Attempt], start: datetime, at: Position) -> Played:
    played = Played()
    queue = [_Event(a.at, i, a, f"v-{i:07d}-{a.number}", "request") for i, a in enumerate(attempts)]
    heapq.heapify(queue)
    seq = len(queue)
    jobs = _Jobs(runtime, start)
    while queue:
        event = heapq.heappop(queue)
        await jobs.run_until(event.at, at)
        at.seconds = event.at
        reply = await runtime.intake.receive(_delivery(event, start))
        if event.kind != "request":
            played.tally.followups_sent += 1
            played.tally.followup_errors += reply.status >= 300
            continue
        action = (reply.body or {}).get("action") if reply.status == 200 else None
        played.tally.record(event.attempt, action)
        played.answers.append((event.attempt, action))
        if action == "allow":
            for follow_up in _follow_ups(event, seq):
                heapq.heappush(queue, follow_up)
            seq += 2
    return played


class _Jobs:
    """The runtime's background jobs, each run at its interval on the virtual clock."""

    def __init__(self, runtime: Any, start: datetime) -> None:
        settings = runtime.settings
        self._runtime, self._start = runtime, start
        self._every = {
            "baselines": float(settings.baseline_refresh_seconds),
            "alerts": float(settings.alerts.evaluate_seconds),
            "containments": float(settings.alerts.containment_poll_seconds),
            "deliver": float(settings.alerts.delivery_seconds),
        }
        self._due = dict(self._every)

    async def run_until(self, seconds: float, at: Position) -> None:
        while (name := min(self._due, key=self._due.__getitem__)) and self._due[name] <= seconds:
            at.seconds = self._due[name]
            await self._run(name, self._start + timedelta(seconds=at.seconds))
            self._due[name] += self._every[name]

    async def _run(self, name: str, moment: datetime) -> None:
        runtime = self._runtime
        if name == "baselines":
            await refresh_live(runtime.reader, runtime.policies, runtime.baselines, moment)
        elif name == "alerts":
            await runtime.alerts.evaluate_once(moment)
        elif name == "containments":
            await runtime.alerts.refresh_once(moment)
        else:
            await runtime.alerts.deliver_once(moment)


def _follow_ups(event: _Event, seq: int) -> list[_Event]:
    outcome, attempt = event.attempt.outcome, event.attempt
    events = [_Event(event.at + outcome.after, seq, attempt, event.ident, "result")]
    if outcome.sms_result is not None:
        receipt_at = event.at + min(RECEIPT_AFTER, outcome.after)
        events.append(_Event(receipt_at, seq + 1, attempt, event.ident, "receipt"))
    return events


def _delivery(event: _Event, start: datetime) -> Delivery:
    attempt, ident = event.attempt, event.ident
    document: dict[str, Any]
    if event.kind == "request":
        document = samples.request_event(
            number=attempt.number,
            method=attempt.method,
            verification_id=ident,
            price=attempt.price,
            currency=attempt.currency,
        )
    elif event.kind == "receipt":
        document = samples.delivered_event(
            verification_id=ident,
            number=attempt.number,
            sms_result=attempt.outcome.sms_result or "Successful",
        )
    else:
        outcome = attempt.outcome
        document = samples.result_event(
            verification_id=ident,
            number=attempt.number,
            status=outcome.status,
            method=attempt.method,
            reason=outcome.reason,
            source="intercepted" if outcome.status == "SUCCESSFUL" else None,
        )
    body = json.dumps(document, separators=(",", ":")).encode()
    return Delivery(body, "application/json", APP_KEY, start + timedelta(seconds=event.at))
