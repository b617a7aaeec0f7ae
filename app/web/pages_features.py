"""Backtest: shown when the app serves the feature (detected from its routes); until then
the page says the feature is not configured. Wiring a view: a page module of its own (as
app.web.pages_alerts), and `view=True` in app.web.features."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.web.auth import ConsoleDep, UserDep
from app.web.common import ConsoleRoute, render
from app.web.features import FEATURES, available

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/backtest", response_class=HTMLResponse)
async def backtest_page(request: Request, user: UserDep, console: ConsoleDep) -> Response:
    return _feature(request, user, console, "backtest", "Backtest")


def _feature(request: Request, user: UserDep, console: ConsoleDep, key: str, page: str) -> Response:
    feature = FEATURES[key]
    on = available(request.app, key)
    return render(request, console, user, "feature.html", page=page, feature=feature, available=on)
