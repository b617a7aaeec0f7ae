"""Migration 0013: on PostgreSQL the inbox is unique on its dedupe key's digest (and
`verifications` leaves room for HOT receipts); a redelivery is still found and refused,
by every claiming statement, under concurrent duplicates too, and for rows stored before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app.store import inbox, recovery
from app.store.base import create_engine
from app.store.migrate import downgrade, upgrade
from app.store.pg_batch_store import StoreItem, store_batch
from app.store.pg_outcomes import DeliveryWrite, ResultWrite, write_outcomes
from app.store.rows import CallbackClaim, DeliveryRow, ResultRow
from tests.conftest import _truncate
from tests.services.stored_history import _claim as stored_claim
from tests.store.test_batch_store_rows import _item

NOW = datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)
OLD_KEY = "VerificationResultEvent:v-old:SUCCESSFUL:callback"


def _claim(key: str, vid: str = "v-1", event: str = "VerificationRequestEvent") -> CallbackClaim:
    return stored_claim(event, vid, key, NOW)


async def _scalar(url: str, sql: str) -> object:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


async def _claims(url: str, key: str) -> tuple[int | None, int | None, object]:
    """Claim `key` through the generic upsert (inbox.py), then look it up as recovery does."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            first = await inbox.claim_callback(conn, _claim(key, event="Other"))
        async with engine.connect() as conn:
            found = await recovery.claimed(conn, key)
        return first, found[0] if found else None, found
    finally:
        await engine.dispose()


def test_rows_stored_before_the_migration_stay_deduplicated(database_url: str) -> None:
    """Rows written at 0012 are refused again at head (the digest is built from them), and
    the downgrade brings the unique key back over the same rows."""
    postgres = database_url.startswith("postgresql")
    downgrade(database_url, "0012")
    try:
        insert = (
            "INSERT INTO callbacks (received_at, dedupe_key, signature, http_status, raw_body) "
            f"VALUES ('2026-03-02 10:00:00', '{OLD_KEY}', 'valid', 200, 'x')"
        )
        asyncio.run(_scalar(database_url, f"{insert} RETURNING id"))
        upgrade(database_url)
        if postgres:
            definition = asyncio.run(
                _scalar(
                    database_url,
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_callbacks_dedupe_digest'",
                )
            )
            assert "md5((dedupe_key)::text))::uuid" in str(definition)
            assert "UNIQUE" in str(definition)
            options = asyncio.run(
                _scalar(
                    database_url, "SELECT reloptions FROM pg_class WHERE relname = 'verifications'"
                )
            )
            assert options == ["fillfactor=75"]
        claimed, found_id, found = asyncio.run(_claims(database_url, OLD_KEY))
        assert claimed is None  # a redelivery of the row stored before
        assert found is not None and found_id == 1
        fresh, fresh_found, _ = asyncio.run(_claims(database_url, OLD_KEY + ":other"))
        assert fresh is not None and fresh_found == fresh
        downgrade(database_url, "0012")
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            asyncio.run(_scalar(database_url, insert))
    finally:
        upgrade(database_url)


@pytest.fixture
async def pg_url(postgres_database: str) -> str:
    await _truncate(postgres_database)
    return postgres_database


def _request(tag: str) -> StoreItem:
    return _item(tag, awkward=False)._replace(settle=None)


@pytest.mark.postgres
async def test_concurrent_duplicates_are_claimed_once(pg_url: str) -> None:
    """Eight connections send the same request event, receipt and result at once: one of
    each is stored, through the batch store and the outcome batches alike."""
    engine = create_engine(pg_url)
    try:
        request_key = _request("race").claim.dedupe_key
        receipt_key = "VerificationSmsDeliveredEvent:v-race:DELIVERED"
        result_key = "VerificationResultEvent:v-race:SUCCESSFUL:callback"

        async def request() -> list[int | None]:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await store_batch(conn, [_request("race")])

        stored = await asyncio.gather(*(request() for _ in range(8)))
        assert sum(1 for found in stored if found[0] is not None) == 1

        receipt = DeliveryWrite(
            _claim(receipt_key, "v-race", "VerificationSmsDeliveredEvent"),
            DeliveryRow(id="v-race", created_at=NOW, sms_result="DELIVERED", sms_delivered_at=NOW),
        )
        result = ResultWrite(
            _claim(result_key, "v-race", "VerificationResultEvent"),
            ResultRow(
                id="v-race",
                created_at=NOW,
                method="sms",
                number="+46701234233",
                reference=None,
                custom=None,
                status="SUCCESSFUL",
                status_reason=None,
                status_source="callback",
                result_at=NOW,
            ),
        )
        written = await asyncio.gather(
            *(write_outcomes(engine, [receipt, result]) for _ in range(8))
        )
        assert sum(1 for w in written if w[0].stored) == 1
        assert sum(1 for w in written if w[1].stored) == 1

        async with engine.connect() as conn:
            counted = (
                await conn.execute(
                    text("SELECT dedupe_key, count(*) FROM callbacks GROUP BY 1 ORDER BY 1")
                )
            ).all()
            status = (
                await conn.execute(text("SELECT status FROM verifications WHERE id = 'v-race'"))
            ).scalar()
        assert [tuple(r) for r in counted] == [(request_key, 1), (result_key, 1), (receipt_key, 1)]
        assert status == "SUCCESSFUL"
    finally:
        await engine.dispose()
