"""A request event's Facts are built once: counting fills their aggregates in place (no copy
with_aggregates, ~23k instructions a decision), and the engine and the stored decision see
them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.facts import Facts
from app.sinch import samples
from app.store.models import VerificationRow
from tests.support import SinchSender


async def test_a_request_events_facts_are_built_once_with_its_aggregates(
    sinch: SinchSender, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Facts] = []
    init = Facts.__init__

    def counting(self: Facts, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(Facts, "__init__", counting)
    event = samples.request_event(number="+46701234567")
    response = await sinch.post(event)
    assert response.status_code == 200 and response.json()["action"] == "allow"
    assert len(built) == 1
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                select(VerificationRow.decision).where(VerificationRow.id == event["id"])
            )
        ).scalar_one()
    document = stored if isinstance(stored, dict) else json.loads(stored)
    # the starter policy's windows, read by counting, in the one Facts the engine saw
    assert document["facts"]["aggregates"] == dict(built[0].aggregates)
    assert built[0].aggregates and all(v >= 0 for v in built[0].aggregates.values())
