"""/admin/backtest: replay a candidate policy over stored history, in the background."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.admin_deps import ConnDep, NowDep
from app.api.auth import AdminDep, AuditorDep
from app.api.backtest_schemas import BacktestCreate, BacktestRead, Problem
from app.api.deps import RuntimeDep
from app.errors import PROBLEM_JSON
from app.services.backtest import jobs

router = APIRouter(prefix="/backtest")
_TITLES = {
    401: "No or an unknown bearer token",
    403: "The token's role may not do this",
    404: "No such backtest",
    409: "A backtest is already running, or this one has ended",
    422: "The policy, the time range, the body or a path parameter is invalid",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of problem+json error answers."""
    schema = Problem.model_json_schema()
    return {
        status: {"description": _TITLES[status], "content": {PROBLEM_JSON: {"schema": schema}}}
        for status in statuses
    }


@router.post(
    "", response_model=BacktestRead, status_code=202, responses=problems(401, 403, 409, 422)
)
async def start_backtest(
    body: BacktestCreate, by: AdminDep, now: NowDep, runtime: RuntimeDep
) -> BacktestRead:
    """Start replaying a candidate policy over stored history (one at a time)."""
    record = await runtime.backtests.start(
        document=body.policy, since=body.since, until=body.until, by=by.name, now=now
    )
    return BacktestRead.of(record)


@router.get("", response_model=list[BacktestRead], responses=problems(401, 403))
async def list_backtests(_: AuditorDep, conn: ConnDep, now: NowDep) -> list[BacktestRead]:
    """Recent backtests, newest first (without their results)."""
    return [BacktestRead.of(record) for record in await jobs.recent(conn, now=now)]


@router.get("/{backtest_id}", response_model=BacktestRead, responses=problems(401, 403, 404, 422))
async def get_backtest(backtest_id: int, _: AuditorDep, conn: ConnDep, now: NowDep) -> BacktestRead:
    """A backtest: its status, progress and, once done, its result."""
    return BacktestRead.of(await jobs.get(conn, backtest_id, now=now))


@router.delete(
    "/{backtest_id}",
    response_model=BacktestRead,
    status_code=202,
    responses=problems(401, 403, 404, 409, 422),
)
async def cancel_backtest(
    backtest_id: int, _: AdminDep, conn: ConnDep, now: NowDep
) -> BacktestRead:
    """Cancel a running backtest (it stops within a page of history)."""
    return BacktestRead.of(await jobs.cancel(conn, backtest_id, now=now))
