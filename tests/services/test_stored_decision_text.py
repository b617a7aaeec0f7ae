"""The decision document as every lane stores it: the same JSON text, pydantic's encoding
of the document (what records.decision_json writes in one pass), and what readers get
back through the JSON column is that document."""

from __future__ import annotations

import json

from pydantic_core import to_json
from sqlalchemy import select, text

from app.sinch import samples
from app.store.tables import verifications
from tests.support import SinchSender


async def test_every_lane_stores_the_document_as_pydantic_encodes_it(guard: SinchSender) -> None:
    """On SQLite with Redis counters the engine's json.dumps wrote its own text (", "
    separators, non-ASCII escaped); every lane now writes the one encoding."""
    events = [samples.request_event(number=f"+4670123{n:04d}") for n in range(3)]
    for event in events:
        assert (await guard.post(event)).status_code == 200
    runtime = guard.client.app.state.runtime  # type: ignore[attr-defined]
    ids = [event["id"] for event in events]
    raw = text(
        "SELECT CAST(decision AS TEXT), "
        + ("typeof(decision)" if runtime.engine.dialect.name == "sqlite" else "'text'")
        + " FROM verifications WHERE id = :id"
    )
    async with runtime.engine.connect() as conn:
        for verification_id in ids:
            stored, kind = (await conn.execute(raw, {"id": verification_id})).one()
            assert kind == "text"  # on SQLite: not a BLOB (json_extract would read it as JSONB)
            assert "\u00d7" in stored  # the trace's non-ASCII (a multiplication sign) as itself
            document = json.loads(stored)
            assert stored == to_json(document).decode()
            assert document["trace"] and document["facts"]["number"]
            read = select(verifications.c.decision).where(verifications.c.id == verification_id)
            assert (await conn.execute(read)).scalar_one() == document
