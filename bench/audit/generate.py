"""Fill a PostgreSQL database with N synthetic verifications (default 1M) for the audit benchmark.

Creates (or recreates with --fresh) the database, migrates it, then COPYs rows through asyncpg:
verifications over the last 30 days, one request callback each, a result callback for those
that ended, and shadow matches for a few percent.

    .venv/bin/python -m bench.audit.generate --url postgresql://postgres@127.0.0.1:5432/vg_audit_bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.store.migrate import upgrade

COUNTRIES = [  # (country, calling code, national prefix, weight)
    ("SE", 46, "70", 30), ("GB", 44, "77", 20), ("US", 1, "415", 15), ("DE", 49, "151", 10),
    ("FR", 33, "6", 8), ("NG", 234, "803", 6), ("ID", 62, "812", 5), ("PK", 92, "300", 3),
    ("VN", 84, "90", 3),
]  # fmt: skip
METHODS = (("sms", 70), ("flashcall", 15), ("callout", 10), ("whatsapp", 5))
APPS = ("5f5c418a-0f91-4bbc-8234-a9bf5eddad97", "0a1b2c3d-0000-4000-8000-000000000002", "app-3")
DENY_RULES = (
    ("country_blocklist", "country_blocked"),
    ("number_velocity", "number_velocity"),
    ("premium_rate", "number_type_blocked"),
    ("pumping_breaker", "low_conversion"),
)
SHADOW_RULES = ("night_watch", "range_velocity")


def _names(text: str) -> list[str]:
    return text.split()


VERIFICATION_COLUMNS = _names(
    "id app_key method number country calling_code number_type number_valid price_amount "
    "price_currency reference custom requested_at request_callback_id action reason "
    "decided_by rule_id rule_name rule_revision shadow_deny degraded decision answer "
    "decided_at decision_ms status status_reason status_source result_at sms_result "
    "sms_delivered_at created_at"
)
CALLBACK_COLUMNS = _names(
    "id received_at app_key event verification_id dedupe_key signature http_status "
    "content_type raw_body"
)
MATCH_COLUMNS = _names("verification_id rule_id rule_name rule_revision action reason matched_at")


def pick(rng: random.Random, weighted: Any) -> Any:
    items = list(weighted)
    return rng.choices(items, weights=[item[-1] for item in items])[0]


def one(rng: random.Random, index: int, at: datetime) -> dict[str, Any]:
    country, code, national, _ = pick(rng, COUNTRIES)
    pumped = country in ("NG", "ID", "PK", "VN") and rng.random() < 0.5
    digits = 4 if pumped else 7
    number = f"+{code}{national}{rng.randrange(10**digits):0{digits}d}"
    method = pick(rng, METHODS)[0]
    deny = rng.random() < (0.6 if pumped else 0.04)
    rule, reason = rng.choice(DENY_RULES) if deny else (None, "default")
    status = _status(rng, deny, pumped)
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "index": index,
        "app_key": APPS[index % 7 % 3],
        "method": method,
        "number": number,
        "country": country,
        "calling_code": code,
        "price": round(rng.uniform(0.01, 0.3 if pumped else 0.08), 4),
        "reference": f"signup-{index}" if index % 2 == 0 else None,
        "at": at,
        "deny": deny,
        "rule": rule,
        "reason": reason,
        "shadow": rng.random() < 0.03,
        "status": status,
    }


def _status(rng: random.Random, deny: bool, pumped: bool) -> str | None:
    if deny:
        return "DENIED"
    roll = rng.random()
    if roll < (0.15 if pumped else 0.65):
        return "SUCCESSFUL"
    return "FAIL" if roll < 0.9 else None


def verification_record(v: dict[str, Any]) -> tuple[Any, ...]:
    at, deny = v["at"], v["deny"]
    decision = {
        "action": "deny" if deny else "allow",
        "reason": v["reason"],
        "mode": "enforce" if deny else "default",
        "rule": v["rule"],
        "trace": [{"rule": v["rule"] or "country_blocklist", "mode": "enforce", "matched": deny}],
    }
    result_at = at + timedelta(seconds=40) if v["status"] else None
    return (
        v["id"], v["app_key"], v["method"], v["number"], v["country"], v["calling_code"],
        "mobile", True, v["price"], "EUR", v["reference"], None, at, v["index"] * 2 + 1,
        "deny" if deny else "allow", v["reason"], "enforce" if deny else "default",
        1 if deny else None, v["rule"], 1 if deny else None, v["shadow"] and not deny, False,
        json.dumps(decision), json.dumps({"action": decision["action"]}), at, 1.5,
        v["status"], "Denied by callback" if deny else None, "intercepted" if v["status"] else None,
        result_at, None, None, at,
    )  # fmt: skip


def callback_records(v: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    body = {"id": v["id"], "event": "VerificationRequestEvent", "method": v["method"],
            "identity": {"type": "number", "endpoint": v["number"]},
            "price": {"currencyId": "EUR", "amount": v["price"]}}  # fmt: skip
    yield _callback(v, v["index"] * 2 + 1, v["at"], "VerificationRequestEvent", body)
    if v["status"]:
        identity = {"type": "number", "endpoint": v["number"]}
        body = {"id": v["id"], "event": "VerificationResultEvent", "method": v["method"],
                "identity": identity, "status": v["status"]}  # fmt: skip
        at = v["at"] + timedelta(seconds=40)
        yield _callback(v, v["index"] * 2 + 2, at, "VerificationResultEvent", body)


def _callback(
    v: dict[str, Any], ident: int, at: datetime, event: str, body: dict[str, Any]
) -> tuple[Any, ...]:
    dedupe = f"{event}:{v['id']}:{body.get('status', '')}"
    raw = json.dumps(body).encode()
    return (ident, at, v["app_key"], event, v["id"], dedupe, "valid", 200,
            "application/json; charset=utf-8", raw)  # fmt: skip


def match_record(v: dict[str, Any]) -> tuple[Any, ...]:
    rule = SHADOW_RULES[v["index"] % 2]
    return (v["id"], 100 + v["index"] % 2, rule, 1, "deny", "shadow_" + rule, v["at"])


async def create_database(url: str, *, fresh: bool) -> None:
    base, name = url.rsplit("/", 1)
    admin = await asyncpg.connect(base + "/postgres")
    try:
        if fresh:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def fill(url: str, count: int, *, batch: int, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    now = datetime.now(UTC)
    span = timedelta(days=30).total_seconds()
    conn = await asyncpg.connect(url)
    try:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            offsets = sorted(rng.random() * span for _ in range(size))
            rows = [
                one(rng, start + i, now - timedelta(seconds=span - o))
                for i, o in enumerate(offsets)
            ]
            await _copy(conn, rows)
            print(f"  {start + size:>9,} rows", flush=True)
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('callbacks', 'id'), max(id)) FROM callbacks"
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _copy(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    async with conn.transaction():
        await conn.copy_records_to_table(
            "verifications", records=[verification_record(v) for v in rows],
            columns=VERIFICATION_COLUMNS,
        )  # fmt: skip
        callbacks = [record for v in rows for record in callback_records(v)]
        await conn.copy_records_to_table("callbacks", records=callbacks, columns=CALLBACK_COLUMNS)
        matches = [match_record(v) for v in rows if v["shadow"]]
        await conn.copy_records_to_table(
            "verification_matches", records=matches, columns=MATCH_COLUMNS
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/vg_audit_bench")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="drop the database first")
    args = parser.parse_args()
    url = args.url.replace("postgresql+asyncpg://", "postgresql://")
    started = time.perf_counter()
    asyncio.run(create_database(url, fresh=args.fresh))
    upgrade(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    asyncio.run(fill(url, args.count, batch=args.batch, seed=args.seed))
    print(f"{args.count:,} verifications in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
