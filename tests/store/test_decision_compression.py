"""The stored decision document (~7 kB for an allow) is TOAST-compressed with lz4 on
PostgreSQL (migration 0008), whichever writer stores it, not only the batched store's
connections."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, text

from app.store.base import create_engine
from app.store.tables import verifications

_LZ4_SUPPORTED = (
    "SELECT coalesce(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings "
    "WHERE name = 'default_toast_compression'"
)


def _document() -> dict[str, object]:
    """A decision the size of a starter policy's allow: a trace of every rule it tried."""
    trace = [
        {"rule_id": i, "rule_name": f"rule-{i}", "matched": False, "conditions": ["velocity"] * 8}
        for i in range(60)
    ]
    return {"action": "allow", "reason": "default", "trace": trace}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_decision_stored_outside_the_batches_is_lz4_compressed(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            if not await conn.scalar(text(_LZ4_SUPPORTED)):
                pytest.skip("this PostgreSQL has no lz4")
            await conn.execute(
                insert(verifications).values(
                    id="v-lz4", created_at=datetime.now(UTC), decision=_document()
                )
            )
            method = await conn.scalar(
                text("SELECT pg_column_compression(decision) FROM verifications WHERE id = 'v-lz4'")
            )
        assert method == "lz4"
    finally:
        await engine.dispose()
