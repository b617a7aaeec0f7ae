"""Who is signed in to the console: the session cookie, checked against the token it names
on every request (a revoked token ends its sessions), and the CSRF check on every change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.api.deps import RuntimeDep
from app.errors import Forbidden
from app.services.tokens import Principal, resolve_token_id
from app.web.console import Console
from app.web.session import COOKIE, Session


class SignInRequired(Exception):
    """Answered with a redirect to the sign-in page."""


def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


@dataclass(frozen=True, slots=True)
class User:
    principal: Principal
    session: Session
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


async def signed_in(request: Request, console: ConsoleDep, runtime: RuntimeDep) -> User:
    session = console.codec.read(request.cookies.get(COOKIE))
    principal = None if session is None else await _principal(session, console, runtime)
    if session is None or principal is None:
        raise SignInRequired
    request.state.principal = principal
    return User(principal, session, console.codec.csrf_token(session))


async def _principal(session: Session, console: Console, runtime: RuntimeDep) -> Principal | None:
    settings = console.settings
    if session.kind == "token" and session.token_id is not None:
        async with runtime.engine.connect() as conn:
            return await resolve_token_id(conn, session.token_id)
    secret = {"bootstrap": settings.bootstrap_token, "link": settings.console_sign_in_code}.get(
        session.kind
    )
    if secret is None or (session.kind == "link" and settings.environment != "development"):
        return None
    if console.codec.fingerprint(secret.get_secret_value()) != session.fingerprint:
        return None
    name = "bootstrap" if session.kind == "bootstrap" else "development link"
    return Principal(token_id=None, name=name, role="admin")


UserDep = Annotated[User, Depends(signed_in)]


async def csrf_checked(request: Request, user: UserDep, console: ConsoleDep) -> User:
    """Every state-changing request carries the session's CSRF token (form field or header)."""
    token = request.headers.get("x-csrf-token")
    if token is None:
        form = await request.form()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    if not console.codec.csrf_valid(user.session, token):
        raise Forbidden("The form is stale or forged: reload the page.", code="csrf_failed")
    return user


async def admin_changes(user: Annotated[User, Depends(csrf_checked)]) -> User:
    if not user.is_admin:
        detail = "Auditors can read the console but not change anything."
        raise Forbidden(detail, code="admin_required")
    return user


ChangeDep = Annotated[User, Depends(csrf_checked)]
AdminChangeDep = Annotated[User, Depends(admin_changes)]
