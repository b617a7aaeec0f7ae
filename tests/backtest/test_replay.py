"""Backtests run through the service on SQLite and PostgreSQL: each expectation is computed
here from the rows the test stored, with the window arithmetic written out in the test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.backtest import jobs
from app.store import backtests as store
from app.store.models import CounterRow
from tests.backtest.helpers import (
    BASE,
    DEFAULTS,
    at,
    attempt,
    backtest,
    denied,
    in_window,
    rule,
    store_rows,
)

COUNTRY_BLOCK = rule("block-ng", {"field": "country", "op": "eq", "value": "NG"})


def candidate_denies(result: dict[str, Any]) -> int:
    return int(result["candidate"]["denied"])


async def test_candidate_adding_a_country_block(store_engine: AsyncEngine) -> None:
    ng = {"country": "NG", "calling_code": 234, "number": "+2348031234567"}
    rows = [
        attempt(at(1), **ng, status="SUCCESSFUL", price_amount=0.20),
        attempt(at(2), **ng, status="FAIL", price_amount=0.25),
        attempt(at(3), **ng, price_amount=0.30, price_currency="usd"),
        denied(at(4), "number-velocity", **ng, status="DENIED", price_amount=0.5),
        attempt(at(5), status="SUCCESSFUL"),
        attempt(at(6), status="FAIL"),
        attempt(at(-5), **ng),  # before `since`: not reported
    ]
    await store_rows(store_engine, rows)
    result = await backtest(store_engine, {"rules": [COUNTRY_BLOCK]})

    counted = [r for r in rows if r["requested_at"] >= BASE]
    nigerian = [r for r in counted if r["country"] == "NG"]
    live_allowed_ng = [r for r in nigerian if r["action"] == "allow"]
    caught = [r for r in live_allowed_ng if r.get("status") != "SUCCESSFUL"]
    verified = [r for r in nigerian if r.get("status") == "SUCCESSFUL"]
    assert result["attempts"] == len(counted) == 6
    assert result["live"] == {"allowed": 5, "denied": 1}
    assert result["candidate"] == {"allowed": len(counted) - len(nigerian), "denied": 4}
    assert result["flips"] == {"allow_to_deny": len(live_allowed_ng), "deny_to_allow": 0}
    assert result["caught"] == len(caught) == 2
    assert result["false_positives"] == len(verified) == 1
    assert result["spend_saved"] == {"EUR": 0.25, "USD": 0.30}
    assert result["spend_lost"] == {"EUR": 0.20}
    block = next(r for r in result["by_rule"] if r["rule"] == "block-ng")
    assert block | {} == {
        "rule": "block-ng",
        "mode": "enforce",
        "action": "deny",
        "matched": 4,
        "would_deny": 4,
        "false_positives": 1,
        "caught": 2,
    }
    by_country = {c["country"]: c for c in result["by_country"]}
    assert by_country["NG"]["candidate"] == {"allowed": 0, "denied": 4}
    assert by_country["SE"]["flips"] == {"allow_to_deny": 0, "deny_to_allow": 0}
    assert [d["day"] for d in result["by_day"]] == [BASE.date().isoformat()]
    flipped = [s["verification_id"] for s in result["samples"]["allow_to_deny"]]
    assert flipped == [r["id"] for r in live_allowed_ng]
    trace = result["samples"]["allow_to_deny"][0]["candidate"]["trace"]
    assert trace[0]["rule"] == "block-ng" and trace[0]["matched"] is True
    assert result["samples"]["allow_to_deny"][0]["number"] == "+2348****567"
    assert result["samples"]["false_positive"][0]["verification_id"] == verified[0]["id"]


async def test_new_velocity_key_rebuilds_windows_across_a_bucket_boundary(
    store_engine: AsyncEngine,
) -> None:
    """A range nobody counted live, over 2 minutes (two 60 s buckets), at most 3."""
    same_range = [at(seconds=s) for s in (-30, 50, 70, 90, 125, 160, 181)]
    rows = [attempt(moment, number=f"+4670123400{i}") for i, moment in enumerate(same_range)] + [
        attempt(at(seconds=80), number="+46709999001")
    ]
    await store_rows(store_engine, rows)
    velocity = {"velocity": {"key": "range", "digits": 8, "window": "2m", "max": 3}}
    result = await backtest(store_engine, {"rules": [rule("range-2m", velocity)]})

    def count(r: dict[str, Any]) -> int:
        ours = r["number"][:9]
        return sum(
            1
            for o in rows
            if o["number"][:9] == ours and in_window(o["requested_at"], r["requested_at"], 120)
        )

    counted = [r for r in rows if r["requested_at"] >= BASE]
    expected = [r["id"] for r in counted if count(r) > 3]
    # Bucketed: 10:00:50 sees the 09:59:30 attempt stored before `since`; 10:03:01 sees the
    # 10:02 and 10:03 buckets only (3, where an exact 2-minute window would hold 5).
    assert [count(r) for r in counted] == [2, 2, 3, 3, 4, 3, 1]
    assert candidate_denies(result) == len(expected) == 1
    assert [s["verification_id"] for s in result["samples"]["allow_to_deny"]] == expected
    sample = result["samples"]["allow_to_deny"][0]["candidate"]["trace"][0]["conditions"][0]
    assert sample["actual"] == 4 and sample["expected"] == 3


async def test_allowed_only_limit_counts_only_what_the_candidate_allowed(
    store_engine: AsyncEngine,
) -> None:
    """Live allowed all four; the candidate denies the first by reference, so its allowed-only
    limit (at most 2 allowed per number) is only reached by the fourth."""
    rows = [attempt(at(0), reference="bad")] + [attempt(at(m)) for m in (5, 10, 15)]
    await store_rows(store_engine, rows)
    limit = {"velocity": {"key": "number", "window": "1h", "max": 2, "only_allowed": True}}
    policy = {
        "rules": [
            rule("bad-ref", {"field": "reference", "op": "eq", "value": "bad"}, priority=1),
            rule("allowed-velocity", limit, priority=2),
        ]
    }
    result = await backtest(store_engine, policy)

    allowed = 0
    expected: list[str] = []
    for r in rows:  # the candidate, by hand: rule 1, then allowed so far + this one > 2
        deny = r["reference"] == "bad" or allowed + 1 > 2
        allowed += not deny
        expected += [r["id"]] if deny else []
    assert expected == [rows[0]["id"], rows[3]["id"]]
    assert candidate_denies(result) == 2
    by_rule = {r["rule"]: r["would_deny"] for r in result["by_rule"]}
    assert by_rule == {"bad-ref": 1, "allowed-velocity": 1}


async def test_candidate_removing_a_rule_flips_its_denies_to_allow(
    store_engine: AsyncEngine,
) -> None:
    rows = [
        denied(at(1), "blocked-number-types", status="DENIED", price_amount=0.4),
        denied(at(2), "blocked-number-types", status="DENIED"),
        denied(at(3), "country-block", country="NG", status="DENIED"),
        attempt(at(4), status="SUCCESSFUL"),
    ]
    await store_rows(store_engine, rows)
    keep = rule("block-ng", {"field": "country", "op": "eq", "value": "NG"})
    result = await backtest(store_engine, {"rules": [keep]})

    live_denied = [r for r in rows if r["action"] == "deny"]
    still_denied = [r for r in live_denied if r["country"] == "NG"]
    assert result["flips"] == {
        "allow_to_deny": 0,
        "deny_to_allow": len(live_denied) - len(still_denied),
    }
    assert result["caught"] == 0 and result["false_positives"] == 0
    assert result["spend_saved"] == {} and result["spend_lost"] == {}
    back = [s["verification_id"] for s in result["samples"]["deny_to_allow"]]
    assert back == [rows[0]["id"], rows[1]["id"]]
    assert result["samples"]["deny_to_allow"][0]["live"]["rule"] == "blocked-number-types"


async def test_shadow_rules_are_reported_and_change_no_answer(store_engine: AsyncEngine) -> None:
    rows = [
        attempt(at(1), status="SUCCESSFUL"),
        attempt(at(2)),
        attempt(at(3), country="NG", number="+2348031234567"),
    ]
    await store_rows(store_engine, rows)
    shadow = rule("watch-se", {"field": "country", "op": "eq", "value": "SE"}, mode="shadow")
    off = rule("off-rule", {"field": "country", "op": "eq", "value": "SE"}, mode="off")
    result = await backtest(store_engine, {"rules": [shadow, off]})

    swedish = [r for r in rows if r["country"] == "SE"]
    assert result["candidate"] == {"allowed": 3, "denied": 0}
    assert result["flips"] == {"allow_to_deny": 0, "deny_to_allow": 0}
    assert result["by_rule"] == [
        {
            "rule": "watch-se",
            "mode": "shadow",
            "action": "deny",
            "matched": len(swedish),
            "would_deny": len(swedish),
            "false_positives": 1,
            "caught": 1,
        }
    ]


async def test_a_result_counts_from_its_own_arrival_time(store_engine: AsyncEngine) -> None:
    """At most 2 unverified per number in 1 h. The first attempt verifies, but its result
    arrives 30 minutes later: the attempt at +20 minutes still sees it unverified. A success
    of an attempt the candidate denies never happened."""
    late = timedelta(minutes=30)
    one = {"number": "+46701111111"}
    two = {"number": "+46702222222"}
    rows = [
        attempt(at(0), **one, status="SUCCESSFUL", result_at=at(0) + late),
        attempt(at(10), **one),
        attempt(at(20), **one),
        attempt(at(40), **one),
        attempt(at(0), **two, reference="bad", status="SUCCESSFUL", result_at=at(1)),
        attempt(at(5), **two),
        attempt(at(6), **two),
    ]
    await store_rows(store_engine, rows)
    unverified = {"velocity": {"key": "number", "window": "1h", "max": 2, "measure": "unverified"}}
    policy = {
        "rules": [
            rule("bad-ref", {"field": "reference", "op": "eq", "value": "bad"}, priority=1),
            rule("unverified", unverified, priority=2),
        ]
    }
    result = await backtest(store_engine, policy)

    decisions: dict[str, bool] = {}
    for r in sorted(rows, key=lambda r: r["requested_at"]):  # the candidate, by hand
        now = r["requested_at"]
        same = [
            o
            for o in rows
            if o["number"] == r["number"] and in_window(o["requested_at"], now, 3600)
        ]
        seen = [o for o in same if o["requested_at"] <= now]
        successes = [
            o for o in seen
            if o.get("status") == "SUCCESSFUL" and o["result_at"] <= now and not decisions.get(o["id"], True)
        ]  # fmt: skip
        deny = r["reference"] == "bad" or len(seen) - len(successes) > 2
        decisions[r["id"]] = deny
    expected = {r["id"] for r in rows if decisions[r["id"]]}
    assert expected == {rows[2]["id"], rows[3]["id"], rows[4]["id"], rows[6]["id"]}
    assert candidate_denies(result) == len(expected)
    by_rule = {r["rule"]: r["would_deny"] for r in result["by_rule"]}
    assert by_rule == {"bad-ref": 1, "unverified": 3}


async def test_empty_history_and_empty_windows(store_engine: AsyncEngine) -> None:
    velocity = {"velocity": {"key": "number", "window": "1h", "max": 0}}
    empty = await backtest(store_engine, {"rules": [rule("any", velocity)]})
    assert empty["attempts"] == 0 and empty["by_day"] == [] and empty["skipped"] == []
    assert empty["by_rule"][0]["matched"] == 0

    await store_rows(store_engine, [attempt(at(1))])
    one = await backtest(store_engine, {"rules": [rule("first", {**velocity, "velocity": {**velocity["velocity"], "max": 1}})]})  # fmt: skip
    # Nothing before it: its window holds itself alone (1, not above 1).
    assert one["candidate"] == {"allowed": 1, "denied": 0}


async def test_attempts_that_cannot_be_replayed_are_skipped_with_reasons(
    store_engine: AsyncEngine,
) -> None:
    rows = [
        attempt(at(1), number="+467012#9f8e7d"),
        attempt(at(2), action=None, reason=None, decided_by=None),
        attempt(at(3), number_type=None, number_valid=None, country=None, calling_code=None),
        attempt(at(4)),
    ]
    await store_rows(store_engine, rows)
    mobile = rule("mobile", {"field": "number_type", "op": "eq", "value": "mobile"})
    result = await backtest(store_engine, {"rules": [mobile]})
    assert result["attempts"] == 2
    # The row stored before its number facts existed is derived from its number again.
    assert result["candidate"] == {"allowed": 0, "denied": 2}
    skipped = {s["reason"]: s["count"] for s in result["skipped"]}
    assert skipped == {"number_anonymized": 1, "never_decided": 1}


async def test_live_counters_are_never_touched(store_engine: AsyncEngine) -> None:
    await store_rows(store_engine, [attempt(at(m)) for m in range(5)])
    velocity = {"velocity": {"key": "global", "window": "1h", "max": 2}}
    result = await backtest(store_engine, {"rules": [rule("global", velocity)]})
    assert result["candidate"]["denied"] == 3
    async with store_engine.connect() as conn:
        stmt = select(func.count()).select_from(CounterRow)
        assert (await conn.execute(stmt)).scalar_one() == 0


async def test_cancelling_stops_the_run_and_frees_the_slot(
    store_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 2 rows: the run is cancelled between pages, once it has made progress."""
    monkeypatch.setattr(jobs, "PAGE", 2)
    await store_rows(store_engine, [attempt(at(m)) for m in range(40)])
    record = await jobs.start(
        store_engine,
        document={"rules": []},
        since=BASE,
        until=at(60),
        by="test",
        now=datetime.now(UTC),
        defaults=DEFAULTS,
    )
    progressed = asyncio.Event()

    async def cancel_once_started() -> None:
        await progressed.wait()
        async with store_engine.begin() as conn:
            await jobs.cancel(conn, record.id, now=datetime.now(UTC))

    canceller = asyncio.create_task(cancel_once_started())
    status = await jobs.execute(store_engine, record.id, progress=lambda _: progressed.set())
    await canceller
    assert status == "cancelled"
    async with store_engine.connect() as conn:
        final = await store.get(conn, record.id)
    assert final is not None
    assert (final.status, final.result, final.lease_expires_at) == ("cancelled", None, None)
    assert 0 < final.progress < 1
    assert (await backtest(store_engine, {"rules": []}))["attempts"] == 40


def test_replayed_successes_count_from_their_arrival() -> None:
    """A success is read by later attempts only once its result arrived, and then in the
    bucket of its request."""
    from app.rules.engine import compile_policy
    from app.rules.model import Policy
    from app.services.backtest.replay import Replayer
    from app.store.backtests import StoredAttempt

    conversion = {"conversion": {"key": "number", "window": "1h", "min_attempts": 5, "below": 0.1}}
    policy = compile_policy(Policy.model_validate({"rules": [rule("conv", conversion)]}))
    replayer = Replayer(policy, bucket_seconds=60)
    fields = dict.fromkeys(StoredAttempt.__dataclass_fields__)
    base = {**fields, "number": "+46701234233", "method": "sms", "action": "allow"}
    ok = StoredAttempt(**{**base, "id": "a", "requested_at": at(0), "status": "SUCCESSFUL", "result_at": at(seconds=10)})  # fmt: skip
    replayer.decide(ok)
    successes = []
    for i, second in enumerate([5, 10, 3600]):
        later = StoredAttempt(**{**base, "id": f"b{i}", "requested_at": at(seconds=second)})
        successes.append(replayer.decide(later)[1].aggregates["successes:number:3600"])
    assert successes == [0, 1, 0]


def test_replayed_first_attempts_feed_min_history() -> None:
    """A `verified` condition with `min_history` judges a key only once its first replayed
    attempt is old enough, and a key silent for a whole window starts anew."""
    from app.rules.engine import compile_policy
    from app.rules.model import Policy
    from app.services.backtest.replay import Replayer
    from app.store.backtests import StoredAttempt

    dead = {"verified": {"key": "country", "window": "1h", "at_most": 0, "min_history": "1m"}}
    policy = compile_policy(Policy.model_validate({"rules": [rule("dead", dead)]}))
    replayer = Replayer(policy, bucket_seconds=60)
    fields = dict.fromkeys(StoredAttempt.__dataclass_fields__)
    base = {**fields, "number": "+6777412345", "method": "sms", "action": "allow"}
    seconds = [0, 59, 60, 60 + 3601, 60 + 3601 + 60]
    actions = []
    for i, second in enumerate(seconds):
        replayed = StoredAttempt(**{**base, "id": f"a{i}", "requested_at": at(seconds=second)})
        actions.append(replayer.decide(replayed)[0].action)
    assert actions == ["allow", "allow", "deny", "allow", "deny"]


ADAPTIVE = {
    "velocity": {
        "key": "range",
        "drop_last": 3,
        "window": "1h",
        "max": None,
        "limit": {"floor": 2, "factor": 1, "verified_in": "14d"},
    }
}


async def test_adaptive_limits_replay_their_verified_baselines(
    store_engine: AsyncEngine,
) -> None:
    """A block whose users verified in the 14 days before earns a limit above the floor, from
    the replayed history (reaching back before `since`): its successes count once their result
    arrived."""
    velocity = {k: v for k, v in ADAPTIVE["velocity"].items() if v is not None}
    policy = {"rules": [rule("range-adaptive", {"velocity": velocity})]}
    busy, fresh, late = "+46701111", "+46702222", "+46703333"
    rows = []
    # Busy block: 4 verified attempts on days -10 .. -7, hours apart (each alone in its hour).
    for day in range(4):
        moment = BASE - timedelta(days=10 - day)
        rows.append(attempt(moment, number=f"{busy}{day:03d}", status="SUCCESSFUL"))
    # Late block: 4 attempts in the hour before `since`, verified only at `since` + 30 min.
    for i in range(4):
        moment = BASE - timedelta(minutes=50 - i * 10)
        rows.append(
            attempt(
                moment,
                number=f"{late}{i:03d}",
                status="SUCCESSFUL",
                result_at=BASE + timedelta(minutes=30),
            )
        )
    # After `since`: 5 attempts in an hour in each block (and in a block never seen).
    for block in (busy, fresh, late):
        rows += [attempt(at(minutes=i), number=f"{block}{100 + i:03d}") for i in range(5)]
    await store_rows(store_engine, rows)
    result = await backtest(store_engine, policy)

    def limit(r: dict[str, Any]) -> float:
        """max(2, verified in 14 d as of the attempt), the block's earlier rows counted."""
        now = r["requested_at"]
        verified = sum(
            1
            for o in rows
            if o["number"][:-3] == r["number"][:-3]
            and o.get("status") == "SUCCESSFUL"
            and o["result_at"] <= now
            and in_window(o["requested_at"], now, 14 * 86_400)
        )
        return max(2.0, verified)

    def count(r: dict[str, Any]) -> int:
        return sum(
            1
            for o in rows
            if o["number"][:-3] == r["number"][:-3]
            and in_window(o["requested_at"], r["requested_at"], 3600)
        )

    counted = [r for r in rows if r["requested_at"] >= BASE]
    expected = [r for r in counted if count(r) > limit(r)]
    # busy: limit 4, its 5th attempt denied; fresh: the floor, 3 denied; late: its 4 earlier
    # attempts in the hour, none verified yet (the floor): all 5 denied.
    assert [(r["number"][:-3], count(r), limit(r)) for r in expected] == [
        (busy, 5, 4.0),
        (fresh, 3, 2.0),
        (fresh, 4, 2.0),
        (fresh, 5, 2.0),
        (late, 5, 2.0),
        (late, 6, 2.0),
        (late, 7, 2.0),
        (late, 8, 2.0),
        (late, 9, 2.0),
    ]
    assert candidate_denies(result) == len(expected)
    by_rule = {r["rule"]: r for r in result["by_rule"]}
    assert by_rule["range-adaptive"]["would_deny"] == len(expected)


async def test_same_hour_baselines_count_this_hour_of_the_days_before(
    store_engine: AsyncEngine,
) -> None:
    limit = {"floor": 2, "factor": 1, "same_hour_days": 3}
    velocity = {"key": "range", "drop_last": 3, "window": "1h", "limit": limit}
    policy = {"rules": [rule("range-same-hour", {"velocity": velocity})]}
    block = "+46704444"
    rows = [  # verified in this hour 1, 2 and 3 days before, and at other hours (not counted)
        attempt(BASE - timedelta(days=d, minutes=-m), number=f"{block}{d}{m:02d}", status="SUCCESSFUL")
        for d, m in ((1, 5), (2, 40), (3, 59), (4, 10), (1, 70), (2, -10))
    ] + [attempt(at(minutes=i), number=f"{block}9{i:02d}") for i in range(6)]  # fmt: skip
    await store_rows(store_engine, rows)
    result = await backtest(store_engine, policy)

    def hour(moment: datetime) -> datetime:
        return moment.replace(minute=0, second=0, microsecond=0)

    def limit_of(r: dict[str, Any]) -> float:
        days = [hour(r["requested_at"]) - timedelta(days=d) for d in (1, 2, 3)]
        verified = sum(
            1 for o in rows if o.get("status") == "SUCCESSFUL" and hour(o["requested_at"]) in days
        )
        return max(2.0, verified)

    counted = [r for r in rows if r["requested_at"] >= BASE]
    assert {limit_of(r) for r in counted} == {3.0}
    expected = [r for r in counted if counted.index(r) + 1 > limit_of(r)]
    assert candidate_denies(result) == len(expected) == 3
