"""The simulator against the real app: its signed events pass the signature check, and its
receipts and results join their verifications."""

from __future__ import annotations

import dataclasses

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from app.simulator.callback import CallbackTarget, HttpxSender
from app.simulator.runner import Runner
from app.simulator.scenarios import Attempt, generate
from app.store.models import VerificationRow
from tests.support import TEST_APP_KEY, TEST_APP_SECRET

OTHER_SECRET = "c2Vjb25kLWFwcC1zZWNyZXQtLTMyLWJ5dGVzLWxvbmc="


def _target(settings: Settings, *, secret: str = TEST_APP_SECRET) -> CallbackTarget:
    return CallbackTarget.at(
        "http://verifyguard.test",
        path=settings.callback_path,
        signed_path=settings.signed_path,
        key=TEST_APP_KEY,
        secret=secret,
    )


def _now(attempts: list[Attempt]) -> list[Attempt]:
    """The same attempts, all due at once: the test waits for nothing but the answers."""
    return [dataclasses.replace(a, at=0.0) for a in attempts]


async def _stored(engine: AsyncEngine) -> list[tuple[str | None, str | None, str | None]]:
    """(number, action, status) of every verification the app stored."""
    table = VerificationRow
    async with engine.connect() as conn:
        result = await conn.execute(select(table.number, table.action, table.status))
        return [tuple(row) for row in result.all()]


async def test_simulated_events_pass_the_signature_check_and_are_decided(
    client: AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    attempts = _now(generate("normal", duration=4, rate=5, seed=11))
    target = _target(settings)
    runner = Runner(send=HttpxSender(client, target, concurrency=4), target=target, time_scale=1e9)
    tally = await runner.play(attempts)
    assert tally.total.attempts == len(attempts)
    assert tally.total.errors == 0
    assert tally.total.allowed == len(attempts)
    assert tally.followup_errors == 0
    stored = await _stored(engine)
    assert len(stored) == len(attempts)
    assert sorted(stored) == sorted((a.number, "allow", a.outcome.status) for a in attempts)


async def test_a_wrong_secret_is_refused_and_counted_as_errors(
    client: AsyncClient, settings: Settings
) -> None:
    attempts = _now(generate("normal", duration=2, rate=2, seed=12))
    target = _target(settings, secret=OTHER_SECRET)
    tally = await Runner(send=HttpxSender(client, target), target=target, time_scale=1e9).play(
        attempts
    )
    assert tally.total.errors == len(attempts) > 0
    assert tally.total.allowed == tally.total.denied == 0
    assert tally.followups_sent == 0


async def test_the_starter_policy_denies_a_hammered_number_after_three_unverified(
    client: AsyncClient, settings: Settings
) -> None:
    abuse = [
        a for a in generate("number-abuse", duration=40, rate=2, seed=13) if a.label == "fraud"
    ]
    target = _target(settings)
    runner = Runner(send=HttpxSender(client, target, concurrency=1), target=target, time_scale=1e9)
    tally = await runner.play(_now(abuse))
    assert tally.total.errors == 0
    assert tally.total.allowed == 3
    assert tally.total.denied == len(abuse) - 3


async def test_progress_is_reported_at_the_end(client: AsyncClient, settings: Settings) -> None:
    seen: list[int] = []
    attempts = _now(generate("normal", duration=2, rate=2, seed=14))
    target = _target(settings)
    runner = Runner(send=HttpxSender(client, target), target=target, time_scale=1e9)
    await runner.play(attempts, progress=lambda tally, _: seen.append(tally.total.attempts))
    assert seen[-1] == len(attempts)


def test_the_callback_url_is_taken_as_well_as_the_base_url(settings: Settings) -> None:
    callback = "https://guard.example/sinch/verification/events"
    for given in ("https://guard.example", "https://guard.example/", callback, callback + "/"):
        target = CallbackTarget.at(
            given, path="/sinch/verification/events", signed_path="/x", key="k", secret="s"
        )
        assert (target.url, target.base_url) == (callback, "https://guard.example")


async def test_the_run_plays_against_the_callback_url(
    client: AsyncClient, settings: Settings
) -> None:
    attempts = _now(generate("normal", duration=2, rate=2, seed=13))
    target = dataclasses.replace(_target(settings))
    pasted = CallbackTarget.at(
        target.url,  # what a user pastes into Sinch's dashboard
        path=settings.callback_path,
        signed_path=settings.signed_path,
        key=TEST_APP_KEY,
        secret=TEST_APP_SECRET,
    )
    runner = Runner(send=HttpxSender(client, pasted), target=pasted, time_scale=1e9)
    tally = await runner.play(attempts)
    assert (runner.refused, tally.total.errors, tally.total.attempts) == (None, 0, len(attempts))


async def test_a_wrong_secret_stops_the_run_at_its_first_answer(
    client: AsyncClient, settings: Settings
) -> None:
    attempts = generate("normal", duration=10, rate=1, seed=14)  # one a second
    target = _target(settings, secret=OTHER_SECRET)
    runner = Runner(send=HttpxSender(client, target), target=target, time_scale=1e9)
    tally = await runner.play(attempts)
    assert runner.refused is not None
    assert "401" in runner.refused and "bad_signature" in runner.refused
    assert "--key and --secret" in runner.refused
    assert tally.total.attempts < len(attempts)


async def test_a_wrong_path_stops_the_run_at_its_first_answer(
    client: AsyncClient, settings: Settings
) -> None:
    attempts = generate("normal", duration=10, rate=1, seed=15)
    wrong = CallbackTarget.at(
        "http://verifyguard.test/hooks/sinch",
        path=settings.callback_path,
        signed_path=settings.signed_path,
        key=TEST_APP_KEY,
        secret=TEST_APP_SECRET,
    )
    runner = Runner(send=HttpxSender(client, wrong), target=wrong, time_scale=1e9)
    tally = await runner.play(attempts)
    assert runner.refused is not None and runner.refused.startswith("404 from")
    assert tally.total.attempts < len(attempts)
