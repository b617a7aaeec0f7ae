"""The alert jobs read the stored policy once per version, not at every evaluation: each
whole read (rules, lists and their entries, validated) was a few ms of the event loop's CPU
every few seconds. A policy change (its version bumped) is read by the next evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import event

from tests.alerts.conftest import runtime_of
from tests.alerts.helpers import attempts_at, minutes, policy_yaml, put_policy
from tests.alerts.receiver import Receiver


@contextmanager
def entry_reads(client: AsyncClient) -> Iterator[list[str]]:
    """The policy's loads while open: each reads the lists' tallies once (and then what
    entries changed: services/policy/held_lists.py)."""
    engine = runtime_of(client).engine.sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM list_entries GROUP BY" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def test_evaluations_read_the_policy_once_per_version(
    client: AsyncClient, receiver: Receiver
) -> None:
    quiet = policy_yaml(receiver).replace("above: 5", "above: 100")
    await put_policy(client, quiet)
    jobs = runtime_of(client).alerts
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    await attempts_at(client, t0 - minutes(1))
    with entry_reads(client) as reads:
        assert (await jobs.evaluate_once(t0)).transitions == 0
        assert (await jobs.evaluate_once(t0 + timedelta(seconds=5))).transitions == 0
        assert (await jobs.evaluate_once(t0 + timedelta(seconds=10))).transitions == 0
        assert len(reads) == 1
        await put_policy(client, policy_yaml(receiver))  # the threshold lowered: a new version
        before = len(reads)
        assert (await jobs.evaluate_once(t0 + timedelta(seconds=15))).transitions == 1
        assert len(reads) == before + 1
