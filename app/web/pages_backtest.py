"""Backtest: start one from the live policy with an edit (YAML), follow its progress, read its
report; admins start and cancel, auditors read. The very service calls of /admin/backtest."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.api.admin_deps import ConnDep, NowDep
from app.api.deps import RuntimeDep
from app.errors import AppError, Conflict, Unprocessable
from app.services.backtest import jobs
from app.services.policy.cache import PolicyCache
from app.services.policy.io import dump_document, load_document
from app.store.backtests import BacktestRecord
from app.web.auth import AdminChangeDep, ConsoleDep, User, UserDep
from app.web.common import ConsoleRoute, back, feature_missing, render
from app.web.console import Console
from app.web.features import available

router = APIRouter(prefix="/backtest", route_class=ConsoleRoute, include_in_schema=False)
SINCE = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@router.get("", response_class=HTMLResponse)
async def backtest_page(
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    conn: ConnDep,
    now: NowDep,
    runtime: RuntimeDep,
) -> Response:
    if not available(request.app, "backtest"):
        return feature_missing(request, console, user, "backtest", page="Backtest")
    text = await live_yaml(conn, runtime.policies)
    return await _page(request, console, user, conn, now, text=text, since="24h")


@router.get("/rows", response_class=HTMLResponse)
async def backtest_rows(
    request: Request, user: UserDep, console: ConsoleDep, conn: ConnDep, now: NowDep
) -> Response:
    """The list's rows alone, polled by console.js while a backtest runs."""
    runs = await jobs.recent(conn, now=now)
    return render(request, console, user, "backtest_rows.html", runs=runs)


@router.post("", response_class=HTMLResponse)
async def start_backtest(
    request: Request,
    user: AdminChangeDep,
    console: ConsoleDep,
    now: NowDep,
    runtime: RuntimeDep,
    document: Annotated[str, Form()],
    since: Annotated[str, Form()] = "24h",
) -> Response:
    """Start it (the service call of POST /admin/backtest), or show why not."""
    errors: list[str] = []
    status = 422
    if since not in SINCE:
        errors.append(f"since: {since!r} is not one of {', '.join(SINCE)}")
    try:
        policy = load_document(document, "yaml")
    except AppError as exc:
        policy, errors = None, [*errors, exc.detail]
    if policy is not None and not isinstance(policy, dict):
        errors.append("the policy must be a mapping (rules:, lists:, …)")
    if not errors:
        try:
            record = await runtime.backtests.start(
                document=policy,
                since=now - SINCE[since],
                until=None,
                by=user.principal.name,
                now=now,
            )
        except Unprocessable as exc:
            errors = [f"{e['loc']}: {e['msg']}" for e in exc.errors or []] or [exc.detail]
        except Conflict as exc:
            errors, status = [exc.detail], exc.status
        else:
            return back(f"/backtest/{record.id}", notice=f"Backtest {record.id} started.")
    # No request connection here: starting takes one of its own (SQLite has a pool of one).
    async with runtime.engine.connect() as conn:
        return await _page(
            request,
            console,
            user,
            conn,
            now,
            text=document,
            since=since,
            errors=errors,
            status=status,
        )


@router.get("/{backtest_id}", response_class=HTMLResponse)
async def report_page(
    backtest_id: int,
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    conn: ConnDep,
    now: NowDep,
) -> Response:
    run = await jobs.get(conn, backtest_id, now=now)
    return render(
        request, console, user, "backtest_report.html", page="Backtest", run=run, report=run.result
    )


@router.post("/{backtest_id}/cancel")
async def cancel(backtest_id: int, user: AdminChangeDep, conn: ConnDep, now: NowDep) -> Response:
    run = await jobs.cancel(conn, backtest_id, now=now)
    return back("/backtest", notice=f"Backtest {run.id} asked to stop (by {user.principal.name}).")


async def live_yaml(conn: ConnDep, policies: PolicyCache) -> str:
    """The live policy as YAML, without its lists (a candidate without lists uses the live
    ones, so the form stays short); as the request path has it compiled, not loaded again."""
    live = (await policies.current(conn)).policy
    document = live.model_dump(mode="json", exclude_none=True, exclude={"lists"})
    return dump_document(document, "yaml")


def running(runs: list[BacktestRecord]) -> bool:
    return any(run.status == "running" for run in runs)


async def _page(
    request: Request,
    console: Console,
    user: User,
    conn: ConnDep,
    now: datetime,
    *,
    text: str,
    since: str,
    errors: list[str] | None = None,
    status: int = 200,
) -> Response:
    runs = await jobs.recent(conn, now=now)
    context: dict[str, Any] = {
        "page": "Backtest",
        "runs": runs,
        "running": running(runs),
        "text": text,
        "since": since,
        "since_choices": list(SINCE),
        "errors": errors or [],
    }
    return render(
        request, console, user, "backtest.html", status_code=status if errors else 200, **context
    )
