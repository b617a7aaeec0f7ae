"""Lists: each named list with its entries (note, expiry); add, remove, CSV import."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app.api.admin_deps import ConnDep, NowDep
from app.errors import BadRequest, Unprocessable
from app.rules.model import ListEntry
from app.services.policy import lists as lists_admin
from app.web.auth import AdminChangeDep, ConsoleDep, UserDep
from app.web.common import ConsoleRoute, back, render

router = APIRouter(prefix="/lists", route_class=ConsoleRoute, include_in_schema=False)


@router.get("", response_class=HTMLResponse)
async def lists_page(
    request: Request, user: UserDep, console: ConsoleDep, conn: ConnDep, now: NowDep
) -> Response:
    summaries = await lists_admin.list_lists(conn, now=now)
    named = [await lists_admin.get_list(conn, name=s.name, now=now) for s in summaries]
    return render(request, console, user, "lists.html", page="Lists", lists=named)


@router.post("/{name}/entries")
async def add_entry(
    name: str,
    user: AdminChangeDep,
    conn: ConnDep,
    now: NowDep,
    value: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
    expires_at: Annotated[str, Form()] = "",
) -> Response:
    entry = _entry(value, note, expires_at)
    await lists_admin.add_entries(conn, name=name, entries=[entry], by=user.principal, now=now)
    return back("/lists", notice=f"Added {entry.value} to {name}.")


@router.post("/{name}/entries/remove")
async def remove_entry(
    name: str, user: AdminChangeDep, conn: ConnDep, now: NowDep, value: Annotated[str, Form()]
) -> Response:
    await lists_admin.remove_entries(conn, name=name, values=[value], by=user.principal, now=now)
    return back("/lists", notice=f"Removed {value} from {name}.")


@router.post("/{name}/import")
async def import_csv(
    name: str,
    user: AdminChangeDep,
    conn: ConnDep,
    now: NowDep,
    file: Annotated[UploadFile, File()],
) -> Response:
    try:
        text = (await file.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The file is not UTF-8 text.", code="malformed_body") from None
    added = await lists_admin.import_csv(conn, name=name, text=text, by=user.principal, now=now)
    return back("/lists", notice=f"Imported {added.get('added', 0)} entries into {name}.")


def _expiry(text: str) -> datetime | None:
    """A `datetime-local` field's value, read as UTC."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"{text!r} is not a date and time.", code="invalid_expiry") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _entry(value: str, note: str, expires_at: str) -> ListEntry:
    try:
        return ListEntry(value=value, note=note, expires_at=_expiry(expires_at))
    except ValidationError as exc:
        errors = [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        raise Unprocessable(f"{value!r} is not a valid entry.", errors=errors) from None
