"""The console: server-rendered pages at `/` for operators (admins change, auditors read),
calling the same services as the admin and audit APIs. `install_console` adds it to an app."""

from __future__ import annotations

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
from app.web.console import HERE, build_console
from app.web.headers import SecurityHeaders

__all__ = ["install_console"]


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


async def _to_sign_in(request: Request, _: Exception) -> Response:
    path = request.url.path
    target = "/sign-in" if path == "/" else f"/sign-in?next={path}"
    return RedirectResponse(target, status_code=303)
