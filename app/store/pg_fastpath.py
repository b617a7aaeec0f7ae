"""PostgreSQL hot path: the callback's statements on the raw asyncpg connection.

SQLAlchemy costs ~130 µs of CPU per statement over asyncpg; a request event needs two
statements (count and read its windows: pg_counters.py; store the decision: here), so on
PostgreSQL they bypass it. Each is a single statement on an autocommit connection, so each
is atomic and holds no lock after it returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic_core import to_json
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import JSON, String

from app.store.counter_model import VALUE_COLUMNS, CounterDeltas
from app.store.models import DEDUPE_CONFLICT_PG
from app.store.rows import CallbackClaim, MatchRow, RequestRow, columns
from app.store.tables import verifications

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
SETTLE_COLUMNS = ("allowed", "allowed_spend_micros")  # a denied attempt's hold taken back
MATCH_FIELDS = ("rule_id", "rule_name", "rule_revision", "action", "reason")


async def driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one (no greenlet switch when it is live)."""
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        return sync.connection.driver_connection
    raw = await conn.get_raw_connection()
    return raw.driver_connection


VERSION_SQL = "SELECT version FROM policy_state WHERE id = 1"
"""The live policy version (the counting statement reads it too)."""


async def policy_version(conn: AsyncConnection) -> int:
    apg = await driver(conn)
    return int(await apg.fetchval(VERSION_SQL))


def pg_type(column: str) -> str:
    """The parameter's type: strings as text, never varchar(n), whose explicit cast would
    silently cut an overlong value (an assignment to the column refuses it instead)."""
    kind = verifications.c[column].type
    if isinstance(kind, JSON):
        return "json"
    return "text" if isinstance(kind, String) else str(kind.compile(dialect=_PG))


CLAIM_COLUMNS = columns(CallbackClaim)
REQUEST_COLUMNS = columns(RequestRow)
# A parameter of the store statement: (source, field). "claim" and "request" fields are read
# from those rows, the others from the statement's own values (`_extra`).
Name = tuple[str, str]


class _Numbered:
    """`$n` placeholders handed out by name: a name used twice is one parameter, and `names`
    is the argument order, so the SQL and its arguments come from the same calls."""

    def __init__(self) -> None:
        self._numbers: dict[Name, int] = {}

    def __call__(self, source: str, field: str, cast: str = "") -> str:
        number = self._numbers.setdefault((source, field), len(self._numbers) + 1)
        return f"${number}::{cast}" if cast else f"${number}"

    @property
    def names(self) -> tuple[Name, ...]:
        return tuple(self._numbers)  # in the order they were numbered


@cache
def _store_sql(
    claim_columns: tuple[str, ...], columns: tuple[str, ...], settle: bool
) -> tuple[str, tuple[Name, ...]]:
    """Claim the inbox row; only if claimed, upsert the verification and its shadow matches.

    Returns the statement and its parameters' names, $1 first.
    """
    p = _Numbered()
    claim = ", ".join(p("claim", c) for c in claim_columns)
    selected = ", ".join(
        # request_callback_id is not a parameter: it is the id the claim returns.
        "claim.id" if c == "request_callback_id" else p("request", c, pg_type(c))
        for c in columns
    )
    update = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("id", "created_at"))
    matches = p("shadow", "json")
    received = p("claim", "received_at")
    settled = _settle_sql(p) if settle else ""
    return (
        f"WITH claim AS (INSERT INTO callbacks ({', '.join(claim_columns)}) VALUES ({claim}) "
        f"ON CONFLICT {DEDUPE_CONFLICT_PG} DO NOTHING RETURNING id), "
        f"v AS (INSERT INTO verifications ({', '.join(columns)}) SELECT {selected} FROM claim "
        f"ON CONFLICT (id) DO UPDATE SET {update} RETURNING id), "
        "m AS (INSERT INTO verification_matches "
        "(verification_id, rule_id, rule_name, rule_revision, action, reason, matched_at) "
        f"SELECT v.id, r.rule_id, r.rule_name, r.rule_revision, r.action, r.reason, {received} "
        f"FROM v, json_to_recordset({matches}::json) AS r(rule_id int, rule_name text, "
        "rule_revision int, action text, reason text))"
        f"{settled} SELECT id FROM claim"
    ), p.names


def _settle_sql(p: _Numbered) -> str:
    """The settle deltas added to their keys' counters, only if the verification was stored.

    Conditioned on `v`, not on `claim`: PostgreSQL runs the data-modifying CTEs the main
    query does not read last-written first, so this one ran before `v`, and while `v` waited
    for another transaction writing the same verification (the outcome batch, with a
    receipt of a late decision) it held the settle's counter rows, a country's among them,
    and every request counting there queued behind it (tests/store/test_hot_rows.py). Reading
    `v` makes its row lock come first: the counter rows are taken last, and held only
    until this statement commits."""
    # An upsert, not an UPDATE … WHERE key = ANY(…): its conflict check always probes the
    # primary key, where a generic plan of the UPDATE could scan the bucket's every row.
    keys, bucket = p("settle", "keys"), p("settle", "bucket", "bigint")
    delta = {c: p("settle", c, "bigint") for c in SETTLE_COLUMNS}
    values = ", ".join(delta.get(c, "0") for c in VALUE_COLUMNS)
    adds = ", ".join(f"{c} = counters.{c} + excluded.{c}" for c in SETTLE_COLUMNS)
    return (
        f", s AS (INSERT INTO counters (key, bucket, {', '.join(VALUE_COLUMNS)}) "
        f"SELECT k, {bucket}, {values} FROM unnest({keys}::text[]) AS k "
        "WHERE EXISTS (SELECT 1 FROM v) "
        f"ON CONFLICT (key, bucket) DO UPDATE SET {adds})"
    )


async def store_decision(
    conn: AsyncConnection,
    *,
    claim: CallbackClaim,
    verification: RequestRow,
    shadow: Sequence[MatchRow],
    settle: CounterDeltas | None = None,
) -> int | None:
    """One atomic statement; the inbox id, or None for a redelivery (nothing written).

    `settle`, if given, is added to its counters in the same statement (when claimed): only
    the keys an allowed-only limit reads, which are not the hot ones.
    """
    sql, names = _store_sql(CLAIM_COLUMNS, REQUEST_COLUMNS, settle is not None)
    args = _arguments(names, claim, verification, _extra(shadow, settle))
    apg = await driver(conn)
    found = await apg.fetchval(sql, *args)
    return int(found) if found is not None else None


def _arguments(
    names: tuple[Name, ...], claim: CallbackClaim, request: RequestRow, extra: dict[Name, Any]
) -> list[Any]:
    """The store statement's arguments, in the order `_store_sql` numbered them."""
    args: list[Any] = []
    for source, field in names:
        if source == "claim":
            args.append(getattr(claim, field))
        elif source == "request":
            args.append(encode(field, getattr(request, field)))
        else:
            args.append(extra[source, field])
    return args


def _extra(shadow: Sequence[MatchRow], settle: CounterDeltas | None) -> dict[Name, Any]:
    """The store statement's parameters that are not fields of its rows."""
    matched = [{k: getattr(m, k) for k in MATCH_FIELDS} for m in shadow]
    extra: dict[Name, Any] = {("shadow", "json"): to_json(matched).decode()}
    if settle is not None:
        extra["settle", "keys"], extra["settle", "bucket"] = list(settle.keys), settle.bucket
        for c in SETTLE_COLUMNS:
            extra["settle", c] = settle.deltas.get(c, 0)
    return extra


_JSON_COLUMNS = frozenset(c.name for c in verifications.c if isinstance(c.type, JSON))


def encode(column: str, value: Any) -> Any:
    if value is not None and column in _JSON_COLUMNS:
        return to_json(value).decode()  # pydantic-core's encoder: several times json.dumps
    return value


async def stored_answer(conn: AsyncConnection, verification_id: str) -> dict[str, Any] | None:
    apg = await driver(conn)
    raw = await apg.fetchval("SELECT answer FROM verifications WHERE id = $1", verification_id)
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else None
