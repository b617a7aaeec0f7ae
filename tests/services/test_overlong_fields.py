"""Request fields longer than their column: answered (allow/deny, never a 5xx) and stored
cut to the column the same way on SQLite and PostgreSQL; the inbox keeps the raw body."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.sinch import samples
from app.store.models import CallbackRow, VerificationRow
from tests.support import SinchSender


def _runtime(sender: SinchSender) -> Any:
    return sender.client.app.state.runtime  # type: ignore[attr-defined]


async def test_overlong_request_fields_are_cut_alike_on_every_backend(
    guard: SinchSender,
) -> None:
    reference = "r" * 1500 + "tail"  # the wire allows 4,096; the column holds 1,024
    endpoint = "+" + "9" * 50  # no valid number; the wire allows 64, the column 32
    event = samples.request_event(number=endpoint, reference=reference)
    reply = await guard.post(event)
    assert reply.status_code == 200
    assert reply.json()["action"] in ("allow", "deny")
    async with _runtime(guard).engine.connect() as conn:
        row = (
            await conn.execute(
                select(VerificationRow.reference, VerificationRow.number).where(
                    VerificationRow.id == event["id"]
                )
            )
        ).one()
        raw = (
            await conn.execute(
                select(CallbackRow.raw_body).where(CallbackRow.verification_id == event["id"])
            )
        ).scalar_one()
    assert row.reference == reference[:1024]
    assert row.number == endpoint[:32]
    assert reference.encode() in raw
