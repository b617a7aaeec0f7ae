"""Overview (metrics, chart, countries, ranges) and the one-click country block."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.api.admin_deps import ConnDep, NowDep
from app.api.deps import Runtime, RuntimeDep
from app.services.alerts import board as alerts_board
from app.services.policy.blocks import block_country
from app.web import overview as view
from app.web.auth import AdminChangeDep, ConsoleDep, User, UserDep
from app.web.common import ConsoleRoute, back, reading, render
from app.web.console import Console
from app.web.features import FEATURES, available
from app.web.overview_cache import Engines

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
BLOCK_FOR = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


@router.get("/", response_class=HTMLResponse)
async def overview_page(
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    runtime: RuntimeDep,
    period: str = "24h",
) -> Response:
    context = await _panels(request, user, console, runtime, period, poll=False)
    return render(request, console, user, "overview.html", page="Overview", **context)


@router.get("/overview/live", response_class=HTMLResponse)
async def overview_panels(
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    runtime: RuntimeDep,
    period: str = "24h",
) -> Response:
    """The overview's panels alone: what the page polls for (logged now and then)."""
    context = await _panels(request, user, console, runtime, period, poll=True)
    return render(request, console, user, "overview_panels.html", **context)


async def _panels(
    request: Request,
    user: User,
    console: Console,
    runtime: Runtime,
    period: str,
    *,
    poll: bool,
) -> dict[str, Any]:
    """Read through the runtime's reader, the read logged apart (overview_cache.py): the
    request path's writer is not held while the page reads and renders."""
    ctx = reading(request, console, user, poll=poll)
    engines = Engines(runtime.engine, runtime.reader)
    data = await console.overview.read(engines, ctx=ctx, period=period)
    on = available(request.app, "alerts")
    summary = None
    if on:
        async with runtime.reader.connect() as conn:
            summary = await alerts_board.summary(conn)
    alerts = {"available": on, "feature": FEATURES["alerts"], "summary": summary}
    sort = request.query_params.get("sort", "attempts")
    return {
        "o": data,
        "countries": view.country_rows(data.countries, sort),
        "sorts": view.COUNTRY_SORTS,
        "sort": sort if sort in view.COUNTRY_SORTS else "attempts",
        "alerts": alerts,
        "periods": list(view.PERIODS),
        "block_for": list(BLOCK_FOR),
    }


@router.post("/countries/block")
async def block(
    user: AdminChangeDep,
    conn: ConnDep,
    now: NowDep,
    country: Annotated[str, Form(min_length=2, max_length=2)],
    duration: Annotated[str, Form()] = "24h",
) -> Response:
    until = now + BLOCK_FOR.get(duration, BLOCK_FOR["24h"])
    note = f"{country.upper()} blocked from the console by {user.principal.name}"
    prefix = await block_country(
        conn, country=country, until=until, note=note, by=user.principal, now=now
    )
    expires = until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return back("/", notice=f"{country.upper()} ({prefix}) is blocked until {expires}.")
