"""The PostgreSQL store statement binds each column to its own row's value, by name.

Its `$n` placeholders and its argument list come from the same calls, so a column added to a
row (or a statement part moved) cannot shift the others: checked here on the SQL text, each
column's placeholder against the argument handed to asyncpg at that position.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from app.store import pg_fastpath
from app.store.counter_model import CounterDeltas
from app.store.rows import CallbackClaim, MatchRow, RequestRow

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CLAIM = CallbackClaim(
    received_at=NOW,
    app_key="app-one",
    event="VerificationRequestEvent",
    verification_id="v-1",
    dedupe_key="VerificationRequestEvent:v-1",
    signature="valid",
    http_status=200,
    error_code=None,
    content_type="application/json",
    raw_body=b"{}",
)
REQUEST = RequestRow(
    id="v-1",
    created_at=NOW,
    app_key="app-two",
    method="sms",
    number="+46701234233",
    country="SE",
    calling_code=46,
    number_type="mobile",
    number_valid=True,
    price_amount=0.05,
    price_currency="EUR",
    rate_amount=0.04,
    rate_currency="USD",
    reference="ref",
    custom="custom",
    requested_at=NOW,
    action="deny",
    reason="number_velocity",
    decided_by="enforce",
    rule_id=7,
    rule_name="velocity",
    rule_revision=3,
    answer={"action": "deny"},
    decided_at=NOW,
    decision_ms=1.5,
    decision={"action": "deny"},
)
SHADOW = [
    MatchRow(
        verification_id="v-1",
        rule_id=8,
        rule_name="watch",
        rule_revision=1,
        action="deny",
        reason="watched",
        matched_at=NOW,
    )
]
SETTLE = CounterDeltas(keys=("number:+46701234233",), bucket=42, deltas={"allowed": -1})


async def _statement(
    monkeypatch: pytest.MonkeyPatch, settle: CounterDeltas | None
) -> tuple[str, tuple[Any, ...]]:
    sent: list[tuple[str, tuple[Any, ...]]] = []

    class Connection:
        async def fetchval(self, sql: str, *args: Any) -> int:
            sent.append((sql, args))
            return 1

    async def driver(_conn: Any) -> Connection:
        return Connection()

    monkeypatch.setattr(pg_fastpath, "driver", driver)
    stored = await pg_fastpath.store_decision(
        None,  # type: ignore[arg-type]
        claim=CLAIM,
        verification=REQUEST,
        shadow=SHADOW,
        settle=settle,
    )
    assert stored == 1
    return sent[0]


def _bound(columns: str, values: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """Each column of an INSERT's list with the argument of its `$n` (None for an expression)."""
    out = {}
    for column, value in zip(columns.split(", "), values.split(", "), strict=True):
        found = re.fullmatch(r"\$(\d+)(::.+)?", value)
        out[column] = args[int(found.group(1)) - 1] if found else None
    return out


@pytest.mark.parametrize("settle", [None, SETTLE], ids=["store", "store-and-settle"])
async def test_each_column_gets_its_own_rows_value(
    monkeypatch: pytest.MonkeyPatch, settle: CounterDeltas | None
) -> None:
    sql, args = await _statement(monkeypatch, settle)
    numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    assert numbers == set(range(1, len(args) + 1)), "every argument is used, and only those"

    claim = re.search(r"INSERT INTO callbacks \((.*?)\) VALUES \((.*?)\) ON CONFLICT", sql)
    assert claim is not None
    claimed = _bound(claim.group(1), claim.group(2), args)
    assert claimed == {c: getattr(CLAIM, c) for c in pg_fastpath.CLAIM_COLUMNS}

    request = re.search(r"INSERT INTO verifications \((.*?)\) SELECT (.*?) FROM claim", sql)
    assert request is not None
    stored = _bound(request.group(1), request.group(2), args)
    expected = {c: getattr(REQUEST, c) for c in pg_fastpath.REQUEST_COLUMNS}
    expected |= {"answer": '{"action":"deny"}', "decision": '{"action":"deny"}'}
    expected["request_callback_id"] = None  # claim.id: the id the claim returns
    assert stored == expected

    matched_at = re.search(r"r\.reason, \$(\d+) FROM v", sql)
    assert matched_at is not None and args[int(matched_at.group(1)) - 1] == NOW
    shadow = re.search(r"json_to_recordset\(\$(\d+)::json\)", sql)
    assert shadow is not None and "watched" in args[int(shadow.group(1)) - 1]


async def test_settle_deltas_go_to_their_own_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    sql, args = await _statement(monkeypatch, SETTLE)
    settled = re.search(
        r"s AS \(INSERT INTO counters \(key, bucket, (.*?)\) SELECT k, (.*?) FROM", sql
    )
    assert settled is not None
    bucket, *deltas = settled.group(2).split(", ")
    assert args[int(bucket[1:].split("::")[0]) - 1] == 42
    bound = _bound(settled.group(1), ", ".join(deltas), args)
    assert bound["allowed"] == -1
    assert bound["allowed_spend_micros"] == 0
    assert all(v is None for c, v in bound.items() if c not in pg_fastpath.SETTLE_COLUMNS)
    keys = re.search(r"unnest\(\$(\d+)::text\[\]\) AS k WHERE EXISTS", sql)
    assert keys is not None and args[int(keys.group(1)) - 1] == ["number:+46701234233"]
