"""What every console route shares: its route class (errors answered as HTML pages), the
page renderer, and the audit context a read runs under (so console reads are logged and
masked exactly as /audit's)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from app.errors import AppError
from app.services.audit.queries import AuditContext, audit_context
from app.web.auth import User
from app.web.console import Console
from app.web.features import FEATURES


class ConsoleRoute(APIRoute):
    """An AppError (after the request's transaction rolled back) becomes an HTML page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except AppError as exc:
                console: Console = request.app.state.console
                context = {"error": exc, "user": None}
                return console.templates.TemplateResponse(
                    request, "error.html", context, status_code=exc.status
                )

        return console_handler


def feature_missing(
    request: Request, console: Console, user: User, key: str, page: str
) -> HTMLResponse:
    """The page of a feature the app does not serve (features.py): what it is, and that it
    is not here."""
    feature = FEATURES[key]
    return render(
        request, console, user, "feature.html", page=page, feature=feature, available=False
    )


def render(
    request: Request,
    console: Console,
    user: User,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    values = {"user": user, "csrf": user.csrf, "notice": request.query_params.get("notice")}
    return console.templates.TemplateResponse(
        request, template, {**values, **context}, status_code=status_code
    )


def back(path: str, **query: str) -> RedirectResponse:
    """After a change: see the page again (Post/Redirect/Get), with what happened."""
    target = f"{path}?{urlencode(query)}" if query else path
    return RedirectResponse(target, status_code=303)


def reading(request: Request, console: Console, user: User, *, poll: bool = False) -> AuditContext:
    """A page's read, logged; a `poll` (a page refreshing itself) only now and then."""
    now, path, query = datetime.now(UTC), request.url.path, dict(request.query_params)
    session = user.session.nonce
    logged = not poll or console.polls.due(session=session, path=path, query=query, at=now)
    return audit_context(
        principal=user.principal,
        settings=console.settings,
        method=request.method,
        path=path,
        query=query,
        now=now,
        logged=logged,
    )
