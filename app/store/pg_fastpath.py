"""PostgreSQL hot path: the callback's statements on the raw asyncpg connection.

SQLAlchemy costs ~130 µs of CPU per statement over asyncpg; a request event needs two
statements (count and read its windows: pg_counters.py; store the decision: here), so on
PostgreSQL they bypass it. Each is a single statement on an autocommit connection, so each
is atomic and holds no lock after it returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, cast

from pydantic_core import to_json
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import JSON

from app.store.counter_model import VALUE_COLUMNS, CounterDeltas
from app.store.models import VerificationRow

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
verifications = cast(Table, VerificationRow.__table__)
SETTLE_COLUMNS = ("pending", "pending_spend_micros", "allowed", "allowed_spend_micros")
_MATCH_FIELDS = ("rule_id", "rule_name", "rule_revision", "action", "reason")


async def driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one (no greenlet switch when it is live)."""
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        return sync.connection.driver_connection
    raw = await conn.get_raw_connection()
    return raw.driver_connection


_VERSION = "SELECT version FROM policy_state WHERE id = 1"


async def policy_version(conn: AsyncConnection) -> int:
    apg = await driver(conn)
    return int(await apg.fetchval(_VERSION))


def _pg_type(column: str) -> str:
    kind = verifications.c[column].type
    return "json" if isinstance(kind, JSON) else str(kind.compile(dialect=_PG))


@cache
def _store_sql(claim_columns: tuple[str, ...], columns: tuple[str, ...], settle: bool) -> str:
    """Claim the inbox row; only if claimed, upsert the verification and its shadow matches."""
    claim = ", ".join(f"${i + 1}" for i in range(len(claim_columns)))
    params = iter(range(len(claim_columns) + 1, 10_000))
    selected = ", ".join(
        "claim.id" if c == "request_callback_id" else f"${next(params)}::{_pg_type(c)}"
        for c in columns
    )
    update = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("id", "created_at"))
    matches = f"${next(params)}"
    received = f"${claim_columns.index('received_at') + 1}"
    settled = ""
    if settle:  # $keys, $bucket, then one delta per SETTLE_COLUMNS, only if claimed
        # An upsert, not an UPDATE … WHERE key = ANY(…): its conflict check always probes the
        # primary key, where a generic plan of the UPDATE could scan the bucket's every row.
        keys, bucket = f"${next(params)}", f"${next(params)}"
        delta = {c: f"${next(params)}::bigint" for c in SETTLE_COLUMNS}
        values = ", ".join(delta.get(c, "0") for c in VALUE_COLUMNS)
        adds = ", ".join(f"{c} = counters.{c} + excluded.{c}" for c in SETTLE_COLUMNS)
        settled = (
            f", s AS (INSERT INTO counters (key, bucket, {', '.join(VALUE_COLUMNS)}) "
            f"SELECT k, {bucket}::bigint, {values} FROM unnest({keys}::text[]) AS k "
            "WHERE EXISTS (SELECT 1 FROM claim) "
            f"ON CONFLICT (key, bucket) DO UPDATE SET {adds})"
        )
    return (
        f"WITH claim AS (INSERT INTO callbacks ({', '.join(claim_columns)}) VALUES ({claim}) "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id), "
        f"v AS (INSERT INTO verifications ({', '.join(columns)}) SELECT {selected} FROM claim "
        f"ON CONFLICT (id) DO UPDATE SET {update} RETURNING id), "
        "m AS (INSERT INTO verification_matches "
        "(verification_id, rule_id, rule_name, rule_revision, action, reason, matched_at) "
        f"SELECT v.id, r.rule_id, r.rule_name, r.rule_revision, r.action, r.reason, {received} "
        f"FROM v, json_to_recordset({matches}::json) AS r(rule_id int, rule_name text, "
        "rule_revision int, action text, reason text))"
        f"{settled} SELECT id FROM claim"
    )


async def store_decision(
    conn: AsyncConnection,
    *,
    claim_columns: tuple[str, ...],
    claim: Mapping[str, Any],
    verification: Mapping[str, Any],
    shadow: Sequence[Mapping[str, Any]],
    settle: CounterDeltas | None = None,
) -> int | None:
    """One atomic statement; the inbox id, or None for a redelivery (nothing written).

    `settle`, if given, is added to its counters in the same statement (when claimed): only
    the keys an allowed-only limit reads, which are not the hot ones.
    """
    columns = tuple(sorted({*verification, "request_callback_id"}))
    args = [claim.get(c) for c in claim_columns]
    # request_callback_id is not a parameter: it is the id the claim returns.
    args += [_encode(c, verification.get(c)) for c in columns if c != "request_callback_id"]
    args.append(to_json([{k: m[k] for k in _MATCH_FIELDS} for m in shadow]).decode())
    if settle is not None:
        args += [list(settle.keys), settle.bucket]
        args += [settle.deltas.get(c, 0) for c in SETTLE_COLUMNS]
    apg = await driver(conn)
    sql = _store_sql(claim_columns, columns, settle is not None)
    found = await apg.fetchval(sql, *args)
    return int(found) if found is not None else None


_JSON_COLUMNS = frozenset(c.name for c in verifications.c if isinstance(c.type, JSON))


def _encode(column: str, value: Any) -> Any:
    if value is not None and column in _JSON_COLUMNS:
        return to_json(value).decode()  # pydantic-core's encoder: several times json.dumps
    return value


async def stored_answer(conn: AsyncConnection, verification_id: str) -> dict[str, Any] | None:
    apg = await driver(conn)
    raw = await apg.fetchval("SELECT answer FROM verifications WHERE id = $1", verification_id)
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else None
