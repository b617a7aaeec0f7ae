"""The simulator's keep-alive connections (aiohttp) against a real server process on the
default store (SQLite): it plays a schedule open loop, says how late it sent each event, and
keeps its connections alive (or sends again on a fresh one when the server closed the one
it was lent)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from app.settings import Settings
from app.simulator.callback import CallbackTarget
from app.simulator.connections import Connections
from app.simulator.runner import Runner
from app.simulator.scenarios import generate
from app.sinch import samples
from tests.support import TEST_APP_KEY, TEST_APP_SECRET
from tests.support_http import ALLOW_ANSWER, read_request
from tests.support_server import served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """One VerifyGuard process on a fresh SQLite file for the module."""
    workdir = tmp_path_factory.mktemp("simulated")
    shutil.copy(sqlite_template, workdir / "verifyguard.db")
    with served(f"sqlite+aiosqlite:///{workdir / 'verifyguard.db'}", workdir) as base:
        yield base


def _target(base: str) -> CallbackTarget:
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:")
    return CallbackTarget.at(
        base,
        path=settings.callback_path,
        signed_path=settings.signed_path,
        key=TEST_APP_KEY,
        secret=TEST_APP_SECRET,
    )


class Opened:
    """Counts the connections a `Connections` opens, through aiohttp's tracing."""

    def __init__(self) -> None:
        self.count = 0
        self.trace = aiohttp.TraceConfig()
        self.trace.on_connection_create_end.append(self._opened)

    async def _opened(self, *_: object) -> None:
        self.count += 1


async def test_the_schedule_is_played_in_full_and_its_pace_reported(server: str) -> None:
    attempts = generate("normal", duration=3, rate=40, seed=21)
    opened = Opened()
    connections = Connections(_target(server), size=64, traces=[opened.trace])
    runner = Runner(send=connections, target=_target(server), time_scale=1e9)
    tally = await runner.play(attempts)
    await connections.aclose()
    assert (tally.total.attempts, tally.total.errors) == (len(attempts), 0)
    assert tally.followup_errors == 0 and tally.followups_sent >= tally.total.allowed
    pace = runner.pace
    assert len(pace.late) == len(pace.answered) == len(attempts)
    assert 1 <= opened.count <= 64
    summary = pace.summary(connections=64, waited=connections.waited)
    span = attempts[-1].at - attempts[0].at
    assert summary["offered_per_s"] == round((len(attempts) - 1) / span, 1)
    assert summary["sent_per_s"] is not None and summary["cpu_ms_per_attempt"] is not None
    assert summary["late_max_ms"] is not None and summary["answer_max_ms"] is not None


async def test_one_connection_carries_every_event_in_turn(server: str) -> None:
    opened = Opened()
    connections = Connections(_target(server), size=1, traces=[opened.trace])
    numbers = [f"+4670123{i:04d}" for i in range(20)]
    answers = await asyncio.gather(
        *(connections(samples.request_event(number=number)) for number in numbers)
    )
    await connections.aclose()
    assert [a.status_code if a else None for a in answers] == [200] * len(numbers)
    assert {a.json()["action"] for a in answers if a} == {"allow"}
    assert opened.count == 1
    assert connections.waited == len(numbers) - 1


@asynccontextmanager
async def _answers_once_per_connection() -> AsyncIterator[str]:
    """A server that answers one request per connection, then closes it without saying so
    (as a server does with a keep-alive connection idle past its timeout)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ALLOW_ANSWER)
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield f"http://127.0.0.1:{port}"


async def test_a_connection_closed_while_idle_is_replaced() -> None:
    async with _answers_once_per_connection() as base:
        opened = Opened()
        connections = Connections(_target(base), size=4, traces=[opened.trace])
        answers = [
            await connections(samples.request_event(number=f"+4670123456{i}")) for i in range(5)
        ]
        await connections.aclose()
    assert [a.status_code if a else None for a in answers] == [200] * 5
    assert opened.count == 5
