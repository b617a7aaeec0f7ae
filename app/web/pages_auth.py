"""Sign in (a token, or the development one-time link), sign out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import RuntimeDep
from app.errors import Forbidden
from app.services.tokens import resolve_token
from app.web.auth import ChangeDep, ConsoleDep
from app.web.common import ConsoleRoute
from app.web.console import Console
from app.web.session import COOKIE

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
FORM_COOKIE = "vg_sign_in"


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, console: ConsoleDep, next: str = "/") -> Response:
    return _form(request, console, next)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    console: ConsoleDep,
    runtime: RuntimeDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
    form_key: Annotated[str, Form()] = "",
) -> Response:
    """The form carries the key its page set as a cookie: no other site can sign a browser
    in under someone else's token (login CSRF)."""
    expected = request.cookies.get(FORM_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, form_key):
        raise Forbidden("The form is stale or forged: reload the page.", code="csrf_failed")
    bootstrap = runtime.settings.bootstrap_token
    async with runtime.engine.connect() as conn:
        principal = await resolve_token(
            conn, token.strip(), bootstrap=bootstrap.get_secret_value() if bootstrap else None
        )
    if principal is None or not token.strip():
        return _form(request, console, next, failed=True)
    kind = "token" if principal.token_id is not None else "bootstrap"
    fingerprint = "" if kind == "token" else console.codec.fingerprint(token.strip())
    return _open(request, console, kind, principal.token_id, fingerprint, _local(next))


@router.get("/sign-in/link")
async def sign_in_link(request: Request, console: ConsoleDep, code: str = "") -> Response:
    """The one-time link `verifyguard serve` prints in development."""
    if not console.link.redeem(code) or console.link.code is None:
        return _form(request, console, "/", link_spent=True)
    fingerprint = console.codec.fingerprint(console.link.code)
    return _open(request, console, "link", None, fingerprint, "/")


@router.post("/sign-out")
async def sign_out(_: ChangeDep) -> Response:
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _form(
    request: Request,
    console: Console,
    next: str,
    *,
    failed: bool = False,
    link_spent: bool = False,
) -> Response:
    """The sign-in page, with a fresh form key (cookie and hidden field)."""
    key = secrets.token_urlsafe(16)
    context = {
        "user": None,
        "next": _local(next),
        "failed": failed,
        "link_spent": link_spent,
        "form_key": key,
    }
    status = 401 if failed or link_spent else 200
    response = console.templates.TemplateResponse(request, "sign_in.html", context, status)
    response.set_cookie(
        FORM_COOKIE,
        key,
        max_age=3600,
        path="/sign-in",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _open(
    request: Request,
    console: Console,
    kind: str,
    token_id: int | None,
    fingerprint: str,
    next: str,
) -> Response:
    _, cookie = console.codec.open(kind=kind, token_id=token_id, fingerprint=fingerprint)
    response = RedirectResponse(next, status_code=303)
    response.delete_cookie(FORM_COOKIE, path="/sign-in")
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=console.codec.max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _local(target: str) -> str:
    """Only a path of this site (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
