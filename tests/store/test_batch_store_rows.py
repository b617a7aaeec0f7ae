"""The batch store statement (pg_batch_store.py) writes what the one-event statement
(pg_fastpath.py) writes: the same inbox row, verification row (JSON columns to the
character), shadow matches and settled counters, for awkward values too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import pg_fastpath
from app.store.base import create_engine
from app.store.counter_model import CounterDeltas
from app.store.pg_batch_store import StoreItem, store_batch
from app.store.rows import CallbackClaim, MatchRow, RequestRow
from tests.conftest import _truncate

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 2, 10, 0, 1, 123456, tzinfo=UTC)
AWKWARD = 'quote " backslash \\ slash / tab \t newline \n é 漢字 🙂 \u2028'


def _item(tag: str, *, awkward: bool) -> StoreItem:
    vid = f"v-{tag}"
    text_value = AWKWARD if awkward else "plain"
    claim = CallbackClaim(
        received_at=NOW,
        app_key="app-one",
        event="VerificationRequestEvent",
        verification_id=vid,
        dedupe_key=f"VerificationRequestEvent:{vid}",
        signature="valid",
        http_status=200,
        error_code=None,
        content_type="application/json; charset=utf-8",
        raw_body=b'{"id": "\xc3\xa9"}\x00\xff',
    )
    request = RequestRow(
        id=vid,
        created_at=NOW,
        app_key=None if awkward else "app-two",
        method="sms",
        number="+46701234233",
        country="SE",
        calling_code=46,
        number_type="mobile",
        number_valid=True,
        price_amount=0.1 + 0.2 if awkward else 0.05,
        price_currency="EUR",
        rate_amount=None if awkward else 1e-7,
        rate_currency=None,
        reference=text_value,
        custom=text_value,
        requested_at=NOW,
        action="deny",
        reason="number_velocity",
        decided_by="enforce",
        rule_id=7,
        rule_name=text_value,
        rule_revision=3,
        answer={"action": "deny", "note": text_value},
        decided_at=NOW,
        decision_ms=2 / 3,
        decision={"action": "deny", "trace": [{"text": text_value, "actual": 1.5}]},
    )
    shadow = [
        MatchRow(
            verification_id=vid,
            rule_id=rule_id,
            rule_name=f"watch-{rule_id}",
            rule_revision=None,
            action="deny",
            reason=text_value,
            matched_at=NOW,
        )
        for rule_id in ((8, 9) if awkward else ())
    ]
    settle = CounterDeltas(
        keys=(f"number:{tag}", f"range:{tag}"),
        bucket=42,
        deltas={"allowed": -1, "allowed_spend_micros": -50_000},
    )
    return StoreItem(claim=claim, verification=request, shadow=shadow, settle=settle)


def _renamed(item: StoreItem, tag: str) -> StoreItem:
    """The same event under another id (and counter keys), for the other statement."""
    old = item.claim.verification_id
    vid = f"v-{tag}"
    claim = dataclasses.replace(
        item.claim, verification_id=vid, dedupe_key=f"VerificationRequestEvent:{vid}"
    )
    shadow = [dataclasses.replace(m, verification_id=vid) for m in item.shadow]
    assert item.settle is not None
    keys = tuple(k.replace(str(old).removeprefix("v-"), tag) for k in item.settle.keys)
    settle = item.settle._replace(keys=keys)
    verification = dataclasses.replace(item.verification, id=vid)
    return StoreItem(claim=claim, verification=verification, shadow=shadow, settle=settle)


@pytest.fixture
async def conn(postgres_database: str) -> AsyncIterator[AsyncConnection]:
    await _truncate(postgres_database)
    engine = create_engine(postgres_database)
    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
    finally:
        await engine.dispose()


async def _stored(conn: AsyncConnection, vid: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Everything one event wrote, without the ids the database handed out."""
    callback = (
        await conn.execute(text("SELECT * FROM callbacks WHERE verification_id = :v"), {"v": vid})
    ).one()
    verification = (
        await conn.execute(
            text(
                "SELECT *, answer::text AS answer_text, decision::text AS decision_text "
                "FROM verifications WHERE id = :v"
            ),
            {"v": vid},
        )
    ).one()
    matches = (
        await conn.execute(
            text(
                "SELECT rule_id, rule_name, rule_revision, action, reason, matched_at "
                "FROM verification_matches WHERE verification_id = :v ORDER BY rule_id"
            ),
            {"v": vid},
        )
    ).all()
    counters = (
        await conn.execute(
            text("SELECT * FROM counters WHERE key = ANY(:k) ORDER BY key"), {"k": list(keys)}
        )
    ).all()
    claim = {k: v for k, v in callback._mapping.items() if k not in ("id", "verification_id")}
    claim["dedupe_key"] = claim["dedupe_key"].removesuffix(vid)
    row = dict(verification._mapping)
    assert row.pop("request_callback_id") == callback.id
    row.pop("id")
    counted = [{**c._mapping, "key": c.key.split(":")[0]} for c in counters]
    return {
        "claim": claim,
        "verification": row,
        "matches": [tuple(m) for m in matches],
        "counters": counted,
    }


@pytest.mark.parametrize("awkward", [False, True], ids=["plain", "awkward"])
async def test_a_batch_stores_what_the_one_event_statement_stores(
    conn: AsyncConnection, awkward: bool
) -> None:
    batch = [_item("b1", awkward=awkward), _item("b2", awkward=not awkward)]
    single = _renamed(batch[0], "s1")
    # One of the batch given its decision encoded already, as the request path does.
    encoded = pg_fastpath.encode("decision", batch[1].verification.decision)
    batch[1] = batch[1]._replace(
        verification=dataclasses.replace(batch[1].verification, decision={}),
        decision_json=encoded,
    )

    ids = await store_batch(conn, batch)
    assert all(isinstance(found, int) for found in ids)
    assert await store_batch(conn, batch[:1]) == [None]  # a redelivery claims nothing
    assert await pg_fastpath.store_decision(
        conn,
        claim=single.claim,
        verification=single.verification,
        shadow=single.shadow,
        settle=single.settle,
    )

    assert single.settle is not None and batch[0].settle is not None
    by_batch = await _stored(conn, "v-b1", batch[0].settle.keys)
    by_one = await _stored(conn, "v-s1", single.settle.keys)
    assert by_batch == by_one
    assert by_batch["verification"]["reference"] == (AWKWARD if awkward else "plain")
    assert by_batch["verification"]["decided_at"] == NOW
    other = await _stored(conn, "v-b2", ("number:b2",))
    assert other["verification"]["decision_text"] == encoded


async def test_rows_stamped_other_than_at_receipt_keep_their_own_times(
    conn: AsyncConnection,
) -> None:
    """A batch whose verification rows are all created, requested and decided at their claim's
    receipt sends those times once (the claim's); a row with times of its own keeps them, and
    so do the others of its batch."""
    own = _item("t1", awkward=False)
    times = (NOW - timedelta(hours=1), NOW - timedelta(minutes=30), NOW + timedelta(seconds=5))
    row = dataclasses.replace(
        own.verification, created_at=times[0], requested_at=times[1], decided_at=times[2]
    )
    at_receipt = _item("t2", awkward=True)
    await store_batch(conn, [own._replace(verification=row), at_receipt])
    await store_batch(conn, [_item("t3", awkward=False)])
    stamped = ("created_at", "requested_at", "decided_at")
    first = (await _stored(conn, "v-t1", ()))["verification"]
    assert tuple(first[c] for c in stamped) == times
    for vid in ("v-t2", "v-t3"):
        stored = await _stored(conn, vid, ())
        assert stored["claim"]["received_at"] == NOW
        assert tuple(stored["verification"][c] for c in stamped) == (NOW, NOW, NOW)
