"""Sign in (a token, or the development one-time link), sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import RuntimeDep
from app.services.tokens import resolve_token
from app.web.auth import ChangeDep, ConsoleDep
from app.web.common import ConsoleRoute
from app.web.console import Console
from app.web.session import COOKIE

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, console: ConsoleDep, next: str = "/") -> Response:
    context = {"user": None, "next": _local(next), "failed": False}
    return console.templates.TemplateResponse(request, "sign_in.html", context)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    console: ConsoleDep,
    runtime: RuntimeDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    bootstrap = runtime.settings.bootstrap_token
    async with runtime.engine.connect() as conn:
        principal = await resolve_token(
            conn, token.strip(), bootstrap=bootstrap.get_secret_value() if bootstrap else None
        )
    if principal is None or not token.strip():
        context = {"user": None, "next": _local(next), "failed": True}
        return console.templates.TemplateResponse(request, "sign_in.html", context, status_code=401)
    kind = "token" if principal.token_id is not None else "bootstrap"
    fingerprint = "" if kind == "token" else console.codec.fingerprint(token.strip())
    return _open(request, console, kind, principal.token_id, fingerprint, _local(next))


@router.get("/sign-in/link")
async def sign_in_link(request: Request, console: ConsoleDep, code: str = "") -> Response:
    """The one-time link `verifyguard serve` prints in development."""
    if not console.link.redeem(code) or console.link.code is None:
        context = {"user": None, "next": "/", "failed": False, "link_spent": True}
        return console.templates.TemplateResponse(request, "sign_in.html", context, 401)
    fingerprint = console.codec.fingerprint(console.link.code)
    return _open(request, console, "link", None, fingerprint, "/")


@router.post("/sign-out")
async def sign_out(_: ChangeDep) -> Response:
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/")
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
