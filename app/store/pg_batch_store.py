"""Group commit of decisions on PostgreSQL: a batch of decided request events stored by one
statement, in one transaction with one synchronous commit (one WAL flush for the batch).

The statement is pg_fastpath's store statement over the batch's rows: each event's inbox row is
claimed (ON CONFLICT DO NOTHING: a redelivery claims nothing), and only the claimed ones
get their verification row, their shadow matches and their settle (a denied attempt's hold
under the allowed-only keys taken back, summed per key and bucket, rows in key order; an
allowed attempt's settle writes nothing).
It returns each event's inbox id, or None for a redelivery, in the batch's order. Dedupe
keys must be distinct within one statement (`store_batch` splits a batch that repeats one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple

from pydantic import ConfigDict, TypeAdapter
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import stats_rollup
from app.store.counter_model import VALUE_COLUMNS, CounterDeltas
from app.store.models import DEDUPE_CONFLICT_PG
from app.store.pg_fastpath import (
    CLAIM_COLUMNS,
    REQUEST_COLUMNS,
    SETTLE_COLUMNS,
    driver,
    encode,
    pg_type,
)
from app.store.rows import CallbackClaim, MatchRow, RequestRow


class StoreItem(NamedTuple):
    """One decided request event, as pg_fastpath.store_decision takes it (a named tuple:
    one per request event, see counter_model.Reads)."""

    claim: CallbackClaim
    verification: RequestRow
    shadow: Sequence[MatchRow]
    settle: CounterDeltas | None
    decision_json: bytes | None = None
    """The verification's `decision` already encoded, UTF-8 (then `verification.decision` is
    not read); None: encoded here."""


_CLAIM_TYPES = {
    "received_at": "timestamptz",
    "http_status": "integer",
    "raw_body": "bytea",
}
_REQUEST = tuple(c for c in REQUEST_COLUMNS if c != "request_callback_id")
# The rows' scalar fields travel as two JSON documents (one array of objects each), read
# back by json_to_recordset: asyncpg encodes an array parameter element by element, with
# several isinstance checks against collections.abc each, and ~40 arrays of one element per
# event cost more than pydantic-core encoding the rows at once. The raw body (bytes) and
# the decision document (encoded already, and parsed by PostgreSQL once) stay arrays.
_CLAIM_JSON = tuple(c for c in CLAIM_COLUMNS if c != "raw_body")
_REQUEST_JSON = tuple(c for c in _REQUEST if c != "decision")
_CLAIM_EXCLUDE = {"__all__": {"raw_body"}}
_REQUEST_EXCLUDE = {"__all__": {"decision", "request_callback_id"}}
# A decided request event's verification row is created, requested and decided at its
# receipt (records.request_row): when every row of a batch holds its claim's `received_at`
# in all three, they are not sent again but read from the claim's (~15k instructions a
# decision: a datetime is pydantic-core's costliest value to encode).
_AT_RECEIPT = ("created_at", "requested_at", "decided_at")
_REQUEST_EXCLUDE_AT_RECEIPT = {"__all__": {"decision", "request_callback_id", *_AT_RECEIPT}}
# The rows encoded by serializers built from their dataclasses' fields, not by to_json's
# inference (which looks each field up on the class and each value's type up by trial): the
# same bytes, ~21k instructions less a decision (callgrind, batches of 16 captured from
# bench.request_cpu: claims 24.5k -> 16.8k a row, verification rows 60.2k -> 46.6k).
# Non-finite floats as strings, as `_json` writes them.
_STRINGS = ConfigDict(ser_json_inf_nan="strings")
_CLAIMS = TypeAdapter(list[CallbackClaim], config=_STRINGS).serializer
_REQUESTS = TypeAdapter(list[RequestRow], config=_STRINGS).serializer


@cache
def _statement(settles: bool, at_receipt: bool = False) -> str:
    """The store statement; without `settles` it has no settle part (and no $6): an INSERT
    into `counters`, even of no rows, fires its statement triggers (the hours' upserts, two
    with ON CONFLICT DO UPDATE), and a batch of allowed attempts settles nothing. With
    `at_receipt` the verification rows' `_AT_RECEIPT` columns are the claim's received_at."""
    sent = [c for c in _REQUEST_JSON if not (at_receipt and c in _AT_RECEIPT)]
    claim_fields = ", ".join(f"{c} {_CLAIM_TYPES.get(c, 'text')}" for c in _CLAIM_JSON)
    request_fields = ", ".join(f"{c} {pg_type(c)}" for c in sent)
    aliases = [f"c_{c}" for c in _CLAIM_JSON] + [f"r_{c}" for c in sent]
    aliases += ["c_raw_body", "r_decision", "shadow"]

    def source(column: str) -> str:
        if column == "request_callback_id":
            return "mine.claim_id"
        at = at_receipt and column in _AT_RECEIPT
        return "mine.c_received_at" if at else f"mine.r_{column}"

    selected = ", ".join(source(c) for c in REQUEST_COLUMNS)
    update = ", ".join(
        f"{c} = excluded.{c}" for c in REQUEST_COLUMNS if c not in ("id", "created_at")
    )
    return (
        "WITH src AS (SELECT * FROM ROWS FROM ("
        f"json_to_recordset($1::json) AS ({claim_fields}), "
        f"json_to_recordset($2::json) AS ({request_fields}), "
        "unnest($3::bytea[]), unnest($4::json[]), json_array_elements($5::json)"
        f") WITH ORDINALITY AS s({', '.join(aliases)}, n)), "
        f"claim AS (INSERT INTO callbacks ({', '.join(CLAIM_COLUMNS)}) "
        f"SELECT {', '.join(f'c_{c}' for c in CLAIM_COLUMNS)} FROM src ORDER BY n "
        f"ON CONFLICT {DEDUPE_CONFLICT_PG} DO NOTHING RETURNING id, dedupe_key), "
        "mine AS (SELECT src.*, claim.id AS claim_id FROM src "
        "JOIN claim ON claim.dedupe_key = src.c_dedupe_key), "
        f"v AS (INSERT INTO verifications ({', '.join(REQUEST_COLUMNS)}) "
        f"SELECT {selected} FROM mine ORDER BY n "
        f"ON CONFLICT (id) DO UPDATE SET {update} RETURNING id), "
        "m AS (INSERT INTO verification_matches "
        "(verification_id, rule_id, rule_name, rule_revision, action, reason, matched_at) "
        "SELECT v.id, r.rule_id, r.rule_name, r.rule_revision, r.action, r.reason, "
        "mine.c_received_at FROM mine JOIN v ON v.id = mine.r_id, "
        "json_to_recordset(mine.shadow) AS r(rule_id int, rule_name text, "
        "rule_revision int, action text, reason text))"
        f"{_settle_sql() if settles else ''} "
        "SELECT src.n, claim.id FROM src LEFT JOIN claim "
        "ON claim.dedupe_key = src.c_dedupe_key ORDER BY src.n"
    )


def _settle_sql() -> str:
    """Denied attempts' holds taken back, summed per key and bucket (rows in key order), only
    for the events the statement claimed."""
    settle_fields = ", ".join(
        ["n bigint", "key text", "bucket bigint"] + [f"{c} bigint" for c in SETTLE_COLUMNS]
    )
    settled = ", ".join(f"sum(t.{c})" if c in SETTLE_COLUMNS else "0" for c in VALUE_COLUMNS)
    return (
        f", s AS (INSERT INTO counters (key, bucket, {', '.join(VALUE_COLUMNS)}) "
        f"SELECT t.key, t.bucket, {settled} FROM json_to_recordset($6::json) "
        f"AS t({settle_fields}) JOIN mine ON mine.n = t.n "
        # through v: the verifications' rows are written (and locked) before any counter
        # row, which is locked last and only until the commit (see pg_fastpath's settle)
        "JOIN v ON v.id = mine.r_id "
        "GROUP BY t.key, t.bucket ORDER BY t.key, t.bucket ON CONFLICT (key, bucket) "
        f"DO UPDATE SET {', '.join(f'{c} = counters.{c} + excluded.{c}' for c in SETTLE_COLUMNS)})"
    )


async def store_batch(conn: AsyncConnection, items: Sequence[StoreItem]) -> list[int | None]:
    """Each event's inbox id, or None for a redelivery (nothing of it written). One
    statement (its own transaction on the autocommit connection) per run of distinct
    dedupe keys: a key seen twice waits for the next statement, which finds it claimed."""
    out: list[int | None] = [None] * len(items)
    left = list(range(len(items)))
    while left:
        seen: set[str | None] = set()
        now: list[int] = []
        later: list[int] = []
        for i in left:
            key = items[i].claim.dedupe_key
            (later if key in seen else now).append(i)
            seen.add(key)
        for i, found in zip(now, await _store(conn, [items[i] for i in now]), strict=True):
            out[i] = found
        left = later
    moment = datetime.now(UTC)
    for item, found in zip(items, out, strict=True):
        if found is not None:  # a statement only for a verification requested long ago
            await stats_rollup.mark_late(conn, item.verification.requested_at, moment)
    return out


async def _store(conn: AsyncConnection, items: Sequence[StoreItem]) -> list[int | None]:
    settle: list[dict[str, Any]] = []
    for n, item in enumerate(items, start=1):
        if item.settle is None:
            continue
        deltas, bucket = item.settle.deltas, item.settle.bucket
        moved = {c: deltas.get(c, 0) for c in SETTLE_COLUMNS}
        settle.extend({"n": n, "key": key, "bucket": bucket, **moved} for key in item.settle.keys)
    rows = [item.verification for item in items]
    at_receipt = all(_at_receipt(item.claim, row) for item, row in zip(items, rows, strict=True))
    exclude = _REQUEST_EXCLUDE_AT_RECEIPT if at_receipt else _REQUEST_EXCLUDE
    args: tuple[Any, ...] = (
        _CLAIMS.to_json([item.claim for item in items], exclude=_CLAIM_EXCLUDE),
        _REQUESTS.to_json(rows, exclude=exclude),
        [item.claim.raw_body for item in items],
        [_decision(item) for item in items],
        _json([item.shadow for item in items]),  # json_to_recordset reads the fields it names
    )
    if settle:
        args += (_json(settle),)
    apg = await driver(conn)
    found = await apg.fetch(_statement(bool(settle), at_receipt), *args)
    return [row[1] for row in found]  # claim.id: a bigint (None: a redelivery), by index


def _at_receipt(claim: CallbackClaim, row: RequestRow) -> bool:
    at = claim.received_at
    return row.created_at == at and row.requested_at == at and row.decided_at == at


def _json(value: Any) -> bytes:
    # Non-finite floats as the strings PostgreSQL's float input reads ("Infinity"), as a
    # binary parameter would have carried them, not as null. Bytes: a json parameter takes
    # them as they are (store/base.py's codec).
    return to_json(value, inf_nan_mode="strings")


def _decision(item: StoreItem) -> bytes | str | None:
    if item.decision_json is not None:
        return item.decision_json
    return encode("decision", item.verification.decision)  # type: ignore[no-any-return]
