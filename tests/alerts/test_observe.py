"""What alerts observe from the stored verifications, per metric and key, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from app.rules.alerting import Observation
from app.rules.alerts import Alert
from app.services.alerts.evaluator import observe
from tests.alerts.conftest import runtime_of
from tests.audit.rows import insert_rows, row

NOW = datetime.now(UTC).replace(microsecond=0)
AT = NOW - timedelta(minutes=1)


def _alert(metric: str, key: str, **over: object) -> Alert:
    threshold: dict[str, object] = {"below": 0.5} if metric == "conversion" else {"above": 1}
    return Alert.model_validate(
        {"name": "a", "metric": metric, "key": key, "window": "10m", **threshold, **over}
    )


async def test_each_metric_per_key(client: AsyncClient) -> None:
    engine = runtime_of(client).engine
    stamp = {"requested_at": AT, "decided_at": AT, "created_at": AT}
    await insert_rows(
        engine,
        [
            row(number="+46701230001", price_amount=0.5, status="SUCCESSFUL", **stamp),
            row(number="+46701230002", price_amount=0.25, **stamp),
            row(number="+46701230003", action="deny", price_amount=0.75, **stamp),
            row(
                number="+46701230006",
                action="deny",
                reason="fallback",
                decided_by="fallback",
                price_amount=2.0,
                **stamp,
            ),
            row(number="+46701230007", action="deny", reason="contained", **stamp),
            row(number="+447700900123", country="GB", app_key="App-Two", price_amount=1.0, **stamp),
            row(number="+46701230004", requested_at=NOW - timedelta(minutes=11)),  # too old
            row(number="+46701230005", requested_at=NOW),  # not yet: the window ends at now
        ],
    )
    async with engine.connect() as conn:

        async def seen(metric: str, key: str, **over: object) -> dict[str, Observation]:
            return await observe(conn, _alert(metric, key, **over), NOW)

        assert await seen("attempts", "global") == {"global": Observation(6, 6)}
        assert await seen("attempts", "country") == {
            "SE": Observation(5, 5),
            "GB": Observation(1, 1),
        }
        # neither the fallback's denial nor the containment's is counted: no rule denied them
        assert (await seen("denied", "range", digits=8))["+46701230"] == Observation(1, 5)
        assert (await seen("spend", "country"))["SE"] == Observation(0.75, 5)
        assert (await seen("denied_spend", "country"))["SE"] == Observation(0.75, 5)
        assert (await seen("denied_spend", "country"))["GB"] == Observation(0, 1)
        assert (await seen("unverified", "country"))["SE"] == Observation(1, 5)
        assert (await seen("conversion", "country"))["SE"] == Observation(0.5, 2)
        assert set(await seen("attempts", "number")) == {
            "+46701230001",
            "+46701230002",
            "+46701230003",
            "+46701230006",
            "+46701230007",
            "+447700900123",
        }
        assert set(await seen("attempts", "application")) == {"app-one", "app-two"}


async def test_min_price_and_dead_over_keep_costly_attempts_to_dead_keys(
    client: AsyncClient,
) -> None:
    """Only attempts priced at least `min_price` count; a key where any attempt verified
    within `dead_over` (before the window too) is not observed at all; and nothing is
    judged dead until some attempt at least 30 s old has verified (results flowing)."""
    engine = runtime_of(client).engine
    stamp = {"requested_at": AT, "decided_at": AT, "created_at": AT}
    await insert_rows(
        engine,
        [
            row(number="+6777123456", country="SB", price_amount=0.38, **stamp),
            row(number="+6777123457", country="SB", price_amount=0.05, **stamp),
            row(number="+2348031234567", country="NG", price_amount=0.3, **stamp),
        ],
    )
    costly = _alert("unverified", "country", min_price=0.2, above=0)
    dead = _alert("unverified", "country", min_price=0.2, above=0, dead_over="7d")
    async with engine.connect() as conn:
        assert await observe(conn, costly, NOW) == {
            "SB": Observation(1, 1),
            "NG": Observation(1, 1),
        }
        assert await observe(conn, dead, NOW) == {}  # nobody verified anywhere yet
    earlier = NOW - timedelta(days=3)
    verified = row(
        number="+2348031234568",
        country="NG",
        price_amount=0.01,
        status="SUCCESSFUL",
        requested_at=earlier,
        decided_at=earlier,
        created_at=earlier,
    )
    await insert_rows(engine, [verified])
    async with engine.connect() as conn:
        assert await observe(conn, dead, NOW) == {"SB": Observation(1, 1)}
        # within the last day nobody verified anywhere: not judged
        recent = _alert("unverified", "country", min_price=0.2, above=0, dead_over="1d")
        assert await observe(conn, recent, NOW) == {}


async def test_pending_results_count_neither_against_conversion_nor_towards_deadness(
    client: AsyncClient,
) -> None:
    """An allowed attempt without a result is unverified for conversion and deadness only once
    it is a minute old (its result would have come): a busy country's first results still on
    their way must not make it look dead (simulator seed 4: NG contained, real users denied).
    A result that came (FAIL) counts at once; pending attempts still count for `unverified`."""
    engine = runtime_of(client).engine
    old = NOW - timedelta(minutes=2)
    young = NOW - timedelta(seconds=20)

    def at(moment: datetime, **over: object) -> dict[str, object]:
        return row(requested_at=moment, decided_at=moment, created_at=moment, **over)

    await insert_rows(
        engine,
        [
            at(old, number="+2348031230001", country="NG", price_amount=0.3, status="SUCCESSFUL"),
            *[
                at(young, number=f"+23480312300{n}", country="NG", price_amount=0.3)
                for n in (10, 11, 12, 13, 14)
            ],
            at(young, number="+2348031230020", country="NG", price_amount=0.3, status="FAIL"),
            # SB: one settled unverified attempt, nothing verified: dead
            at(old, number="+6777123456", country="SB", price_amount=0.38),
        ],
    )
    conversion = _alert("conversion", "country")
    unverified = _alert("unverified", "country", min_price=0.2, above=0)
    dead = _alert("unverified", "country", min_price=0.2, above=0, dead_over="7d")
    async with engine.connect() as conn:
        # NG: 1 verified of 2 settled (the five pending left out, the FAIL counted)
        assert (await observe(conn, conversion, NOW))["NG"] == Observation(0.5, 2)
        assert (await observe(conn, unverified, NOW))["NG"] == Observation(6, 7)
        # 1 of 2 settled verified: alive, so not observed by a dead_over alert; SB is dead
        assert await observe(conn, dead, NOW) == {"SB": Observation(1, 1)}
        # a minute on, the five are settled and unverified: 1 of 7 verified, NG is dead too
        later = NOW + timedelta(seconds=41)
        assert set(await observe(conn, dead, later)) == {"SB", "NG"}
