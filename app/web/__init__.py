"""The console: server-rendered pages at `/` for operators (admins change, auditors read),
calling the same services as the admin and audit APIs. `install_console` adds it to an app."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.settings import Settings
from app.web import (
    pages_alerts,
    pages_auth,
    pages_backtest,
    pages_decisions,
    pages_lists,
    pages_overview,
    pages_rules,
)
from app.web.auth import SignInRequired
from app.web.console import HERE, Console, build_console
from app.web.headers import SecurityHeaders
from app.web.overview_cache import Engines
from app.web.warm import warm

__all__ = ["close_console", "install_console", "warm_up_task"]


def install_console(app: FastAPI, settings: Settings) -> None:
    app.state.console = build_console(settings)
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (
        pages_auth,
        pages_overview,
        pages_decisions,
        pages_rules,
        pages_lists,
        pages_alerts,
        pages_backtest,
    ):
        app.include_router(module.router)


def warm_up_task(app: FastAPI, engines: Engines) -> asyncio.Task[None] | None:
    """The console warmed in the background once the app is up (app/web/warm.py)."""
    console: Console = app.state.console
    if not console.settings.console_warm_up:
        console.warmed.set()
        return None
    return asyncio.create_task(warm(console, engines), name="verifyguard-console-warm-up")


async def close_console(app: FastAPI) -> None:
    """Its background recomputations stopped (before the engine they use is closed)."""
    console: Console = app.state.console
    await console.overview.close()


async def _to_sign_in(request: Request, _: Exception) -> Response:
    path = request.url.path
    target = "/sign-in" if path == "/" else f"/sign-in?next={path}"
    return RedirectResponse(target, status_code=303)
