"""A read parked mid-way while request events are decided beside it: on SQLite the writer
is their one connection, so a read holding it would leave them to the fallback."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from httpx import AsyncClient, Response

from app.sinch import samples
from tests.support import SinchSender


@dataclass
class Parked:
    """A function of `module` that waits, once called, until released."""

    reading: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def park(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> Parked:
    parked, original = Parked(), getattr(module, name)

    async def waiting(*args: Any, **kwargs: Any) -> Any:
        parked.reading.set()
        await parked.release.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(module, name, waiting)
    return parked


async def asked_beside_requests(
    client: AsyncClient,
    headers: dict[str, str],
    sinch: SinchSender,
    parked: Parked,
    path: str,
    params: dict[str, str] | None = None,
    *,
    first: int,
) -> Response:
    """GET `path`; once its read is parked, eight request events (numbers from `first`) are
    all decided (allow) before it answers; then it is released and its response returned."""
    asked = asyncio.create_task(client.get(path, params=params, headers=headers))
    try:
        await asyncio.wait_for(parked.reading.wait(), 5)
        numbers = [f"+4673{n:07d}" for n in range(first, first + 8)]
        replies = await asyncio.gather(
            *(sinch.post(samples.request_event(number=n)) for n in numbers)
        )
        assert not asked.done()
        assert [reply.json()["action"] for reply in replies] == ["allow"] * len(numbers)
    finally:
        parked.release.set()
    return await asked
