"""Retention on every backend: purge old verifications (with callbacks, matches, counters),
anonymise old numbers with a keyed hash that keeps the range; the CLI, dry runs included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.cli import cli
from app.services.audit import retention
from app.sinch import samples
from app.store.models import CallbackRow, CounterRow, VerificationMatchRow, VerificationRow
from tests.support import SinchSender

KEY = b"test-anonymize-key"
OLD, NEW = "+46701111111", "+46702222222"
verifications, callbacks = VerificationRow.__table__, CallbackRow.__table__
counters = CounterRow.__table__


async def _age(engine: AsyncEngine, ident: str, days: int) -> None:
    """Pretend a verification and its callbacks are `days` old."""
    then = datetime.now(UTC) - timedelta(days=days)
    async with engine.begin() as conn:
        await conn.execute(
            update(verifications).where(verifications.c.id == ident).values(created_at=then)
        )
        await conn.execute(
            update(callbacks).where(callbacks.c.verification_id == ident).values(received_at=then)
        )


async def _count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def _two_verifications(sinch: SinchSender, engine: AsyncEngine) -> tuple[str, str]:
    old = samples.request_event(number=OLD)
    new = samples.request_event(number=NEW)
    for event in (old, new):
        await sinch.post(event)
    await sinch.post(samples.result_event(verification_id=old["id"], number=OLD))
    await _age(engine, old["id"], days=100)
    return old["id"], new["id"]


async def test_purge_deletes_old_verifications_with_their_callbacks(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    old, new = await _two_verifications(sinch, engine)
    async with engine.begin() as conn:
        await conn.execute(
            counters.insert().values(
                key="number:+1",
                bucket=60,
                attempts=1,
                allowed=0,
                pending=0,
                spend_micros=0,
                allowed_spend_micros=0,
                pending_spend_micros=0,
                successes=0,
            )
        )
    now, ninety = datetime.now(UTC), timedelta(days=90)
    week = timedelta(days=8)
    dry = await retention.purge(
        engine, older_than=ninety, counter_retention=week, now=now, dry_run=True
    )
    assert dry.rows["verifications"] == 1 and dry.rows["callbacks"] == 2
    assert dry.rows["counters"] == 1
    assert await _count(engine, verifications) == 2, "a dry run deletes nothing"
    done = await retention.purge(
        engine, older_than=ninety, counter_retention=week, now=now, batch=1
    )
    assert done.rows["verifications"] == 1 and done.rows["counters"] == 1
    assert await _count(engine, verifications, verifications.c.id == old) == 0
    assert await _count(engine, callbacks, callbacks.c.verification_id == old) == 0
    assert await _count(engine, verifications, verifications.c.id == new) == 1
    assert await _count(engine, callbacks, callbacks.c.verification_id == new) == 1
    assert await _count(engine, counters) >= 1, "recent counter buckets stay"
    assert (
        await _count(
            engine, VerificationMatchRow.__table__, VerificationMatchRow.verification_id == old
        )
        == 0
    )


async def test_anonymize_replaces_old_numbers_everywhere_but_keeps_the_range(
    sinch: SinchSender, engine: AsyncEngine
) -> None:
    old, new = await _two_verifications(sinch, engine)
    now, thirty = datetime.now(UTC), timedelta(days=30)
    assert await retention.anonymize(engine, older_than=thirty, key=KEY, now=now, dry_run=True) == 1
    assert await retention.anonymize(engine, older_than=thirty, key=KEY, now=now, batch=1) == 1
    assert await retention.anonymize(engine, older_than=thirty, key=KEY, now=now) == 0, "once"
    async with engine.connect() as conn:
        rows = {r.id: r for r in await conn.execute(select(verifications))}
        bodies = [r.raw_body for r in await conn.execute(select(callbacks.c.raw_body))]
    token = retention.pseudonym(OLD, KEY)
    assert rows[old].number == token and token.startswith(OLD[:7]) and len(token) <= 32
    assert token != retention.pseudonym(OLD, b"another key")
    assert rows[old].country == "SE" and rows[old].action, "country and the decision stay"
    assert OLD not in json.dumps(rows[old].decision)
    assert rows[new].number == NEW, "recent numbers are untouched"
    assert not any(OLD.encode() in body for body in bodies)
    assert any(NEW.encode() in body for body in bodies)


def test_purge_command_dry_run_and_for_real(database_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"VERIFYGUARD_DATABASE_URL": database_url, "VERIFYGUARD_ANONYMIZE_KEY": "k"}
    dry = runner.invoke(cli, ["purge", "--older-than", "90d", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 0 verifications" in dry.output
    real = runner.invoke(cli, ["purge", "--older-than", "12w", "--anonymize-after", "30d"], env=env)
    assert real.exit_code == 0, real.output
    assert "deleted 0 verifications" in real.output and "anonymised 0" in real.output
    bad = runner.invoke(cli, ["purge", "--older-than", "90x"], env=env)
    assert bad.exit_code != 0
