"""/admin/backtest: replay a candidate policy over stored history, in the background."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.admin_deps import BacktestId, ConnDep, NowDep
from app.api.auth import AdminDep, AuditorDep
from app.api.backtest_schemas import BacktestCreate, BacktestRead
from app.api.deps import RuntimeDep
from app.api.problems import problem_responses
from app.services.backtest import jobs

router = APIRouter(prefix="/backtest")


@router.post(
    "",
    response_model=BacktestRead,
    status_code=202,
    responses=problem_responses(400, 401, 403, 409, 413, 422),
)
async def start_backtest(
    body: BacktestCreate, by: AdminDep, now: NowDep, runtime: RuntimeDep
) -> BacktestRead:
    """Start replaying a candidate policy over stored history (one at a time)."""
    record = await runtime.backtests.start(
        document=body.policy, since=body.since, until=body.until, by=by.name, now=now
    )
    return BacktestRead.of(record)


@router.get("", response_model=list[BacktestRead], responses=problem_responses(401, 403))
async def list_backtests(_: AuditorDep, conn: ConnDep, now: NowDep) -> list[BacktestRead]:
    """Recent backtests, newest first (without their results)."""
    return [BacktestRead.of(record) for record in await jobs.recent(conn, now=now)]


@router.get(
    "/{backtest_id}", response_model=BacktestRead, responses=problem_responses(401, 403, 404, 422)
)
async def get_backtest(
    backtest_id: BacktestId, _: AuditorDep, conn: ConnDep, now: NowDep
) -> BacktestRead:
    """A backtest: its status, progress and, once done, its result."""
    return BacktestRead.of(await jobs.get(conn, backtest_id, now=now))


@router.delete(
    "/{backtest_id}",
    response_model=BacktestRead,
    status_code=202,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def cancel_backtest(
    backtest_id: BacktestId, _: AdminDep, conn: ConnDep, now: NowDep
) -> BacktestRead:
    """Cancel a running backtest (it stops within a page of history)."""
    return BacktestRead.of(await jobs.cancel(conn, backtest_id, now=now))
