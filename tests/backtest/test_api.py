"""/admin/backtest over HTTP: the run happens in a child process of the app, at most one at a
time across apps sharing a database; cancellable; errors as problem+json."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.settings import Settings
from app.store.tables import backtests
from tests.backtest.helpers import BASE, at, attempt, rule, store_rows
from tests.conftest import make_settings

BLOCK_NG = {"rules": [rule("block-ng", {"field": "country", "op": "eq", "value": "NG"})]}
WINDOW = {"since": BASE.isoformat(), "until": (BASE + timedelta(hours=1)).isoformat()}


async def finished(client: AsyncClient, backtest_id: int, headers: dict[str, str]) -> Any:
    """Poll until it ends; generous, as starting the child process on a loaded 2-core
    machine alone can take tens of seconds."""
    for _ in range(2400):
        answer = await client.get(f"/admin/backtest/{backtest_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        if answer.json()["status"] != "running":
            return answer.json()
        await asyncio.sleep(0.1)
    raise AssertionError("the backtest did not finish in 240 s")


async def test_a_backtest_runs_in_the_background_and_keeps_its_result(
    client: AsyncClient, engine: AsyncEngine, admin: dict[str, str], auditor: dict[str, str]
) -> None:
    ng = {"country": "NG", "calling_code": 234, "number": "+2348031234567"}
    await store_rows(
        engine,
        [attempt(at(1), **ng, price_amount=0.3), attempt(at(2), status="SUCCESSFUL")],
    )
    started = await client.post(
        "/admin/backtest", json={"policy": BLOCK_NG, **WINDOW}, headers=admin
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running" and started.json()["result"] is None
    done = await finished(client, started.json()["id"], auditor)
    assert done["status"] == "done" and done["progress"] == 1.0, done
    result = done["result"]
    assert result["attempts"] == 2
    assert result["flips"] == {"allow_to_deny": 1, "deny_to_allow": 0}
    assert result["caught"] == 1 and result["spend_saved"] == {"EUR": 0.3}
    listed = await client.get("/admin/backtest", headers=auditor)
    assert [(b["id"], b["status"], b["result"]) for b in listed.json()] == [
        (done["id"], "done", None)
    ]


async def test_an_invalid_policy_is_422_as_for_put(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    bad = {"rules": [{"name": "x", "action": "deny", "reason": "x_y", "when": {"velocity": {"key": "number", "window": "1h"}}}]}  # fmt: skip
    answer = await client.post("/admin/backtest", json={"policy": bad, **WINDOW}, headers=admin)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["code"] == "validation_error"
    put = await client.put("/admin/policy", params={"dry_run": "true"}, json=bad, headers=admin)
    assert put.status_code == 422
    expected = [{**e, "loc": f"policy.{e['loc']}"} for e in put.json()["errors"]]
    assert body["errors"] == expected
    assert body["errors"][0]["loc"].startswith("policy.rules.0.when.velocity")
    backwards = {"policy": BLOCK_NG, "since": WINDOW["until"], "until": WINDOW["since"]}
    answer = await client.post("/admin/backtest", json=backwards, headers=admin)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_window")


async def test_reads_need_a_token_and_writes_an_admin(
    client: AsyncClient, auditor: dict[str, str]
) -> None:
    assert (await client.get("/admin/backtest")).json()["code"] == "missing_token"
    answer = await client.post("/admin/backtest", json={"policy": BLOCK_NG, **WINDOW}, headers=auditor)  # fmt: skip
    assert (answer.status_code, answer.json()["code"]) == (403, "admin_required")


async def test_cancel(client: AsyncClient, engine: AsyncEngine, admin: dict[str, str]) -> None:
    missing = await client.delete("/admin/backtest/999", headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "backtest_not_found")
    started = await client.post("/admin/backtest", json={"policy": BLOCK_NG, **WINDOW}, headers=admin)  # fmt: skip
    backtest_id = started.json()["id"]
    cancelled = await client.delete(f"/admin/backtest/{backtest_id}", headers=admin)
    assert cancelled.status_code == 202, cancelled.text
    final = await finished(client, backtest_id, admin)
    # The child process may have finished its (empty) history before it saw the request.
    assert final["status"] in ("cancelled", "done")
    again = await client.delete(f"/admin/backtest/{backtest_id}", headers=admin)
    assert (again.status_code, again.json()["code"]) == (409, "backtest_not_running")


async def test_a_run_whose_runner_is_gone_fails_and_frees_the_slot(
    client: AsyncClient, engine: AsyncEngine, admin: dict[str, str]
) -> None:
    """A lease that is not renewed (its process died) frees the slot for the next backtest."""
    first = await client.post("/admin/backtest", json={"policy": BLOCK_NG, **WINDOW}, headers=admin)  # fmt: skip
    await finished(client, first.json()["id"], admin)
    async with engine.begin() as conn:  # as if the runner died mid-run, a minute ago
        await conn.execute(
            update(backtests).values(status="running", lease_expires_at=BASE, result=None)
        )
    lost = await client.get(f"/admin/backtest/{first.json()['id']}", headers=admin)
    assert lost.json()["status"] == "failed" and "lease expired" in lost.json()["error"]
    second = await client.post("/admin/backtest", json={"policy": BLOCK_NG, **WINDOW}, headers=admin)  # fmt: skip
    assert second.status_code == 202


@pytest.fixture
async def second_app(settings: Settings, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    """Another app process's worth of runtime on the same database."""
    other = make_settings(settings.database_url, tmp_path / "other", bootstrap_token=settings.bootstrap_token.get_secret_value() if settings.bootstrap_token else None)  # fmt: skip
    app = create_app(other)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://second.test") as http:
            yield http


async def test_two_workers_asked_at_once_start_one(
    client: AsyncClient, second_app: AsyncClient, engine: AsyncEngine, admin: dict[str, str]
) -> None:
    await store_rows(engine, [attempt(at(m)) for m in range(30)])
    body = {"policy": BLOCK_NG, **WINDOW}
    answers = await asyncio.gather(
        client.post("/admin/backtest", json=body, headers=admin),
        second_app.post("/admin/backtest", json=body, headers=admin),
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["code"] == "backtest_running"
    winner = next(a for a in answers if a.status_code == 202).json()["id"]
    assert (await finished(client, winner, admin))["status"] == "done"
    after = await second_app.post("/admin/backtest", json=body, headers=admin)
    assert after.status_code == 202  # the slot is free again once it is done
    await finished(client, after.json()["id"], admin)


async def test_openapi_declares_every_answer(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    declared = {
        ("post", "/admin/backtest"): {"202", "400", "401", "403", "409", "413", "422"},
        ("get", "/admin/backtest"): {"200", "401", "403"},
        ("get", "/admin/backtest/{backtest_id}"): {"200", "401", "403", "404", "422"},
        ("delete", "/admin/backtest/{backtest_id}"): {"202", "401", "403", "404", "409", "422"},
    }
    for (method, path), statuses in declared.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses, (method, path, set(responses))
        for status in statuses - {"200", "202"}:
            assert "application/problem+json" in responses[status]["content"], (path, status)
