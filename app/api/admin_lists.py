"""/admin/lists: named lists and their entries (bulk add, bulk remove, CSV import)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.api.admin_deps import ConnDep, CsvText, NowDep, ReadDep
from app.api.admin_schemas import (
    EntriesAdd,
    EntriesAdded,
    EntriesRemove,
    EntriesRemoved,
    ListCreate,
    ListRead,
    ListSummary,
)
from app.api.auth import AdminDep, AuditorDep
from app.api.links import links
from app.api.problems import problem_responses
from app.services.policy import lists as lists_admin

router = APIRouter(prefix="/lists")
WRITE = problem_responses(400, 403, 409, 413, 422)
WRITE_ONE = problem_responses(400, 403, 404, 413, 422)
_ONE = "/admin/lists/{name}"
_TO_LIST = {
    "GetList": ("get", _ONE),
    "DeleteList": ("delete", _ONE),
    "AddEntries": ("post", _ONE + "/entries"),
    "RemoveEntries": ("delete", _ONE + "/entries"),
    "ImportCsv": ("post", _ONE + "/import"),
}
CREATED = {**WRITE, **links(201, _TO_LIST, name="name")}
CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        }
    }
}


@router.get("", response_model=list[ListSummary])
async def list_lists(_: AuditorDep, conn: ReadDep, now: NowDep) -> list[ListSummary]:
    """List the named lists with their entry counts."""
    rows = await lists_admin.list_lists(conn, now=now)
    return [ListSummary.model_validate(row) for row in rows]


@router.post("", response_model=ListRead, status_code=201, responses=CREATED)
async def create_list(body: ListCreate, by: AdminDep, conn: ConnDep, now: NowDep) -> ListRead:
    """Create a list of numbers or prefixes."""
    return ListRead.model_validate(await lists_admin.create_list(conn, named=body, by=by, now=now))


@router.get("/{name}", response_model=ListRead, responses=problem_responses(404))
async def get_list(name: str, _: AuditorDep, conn: ReadDep, now: NowDep) -> ListRead:
    """Read a list with every entry (expired ones are shown as inactive)."""
    return ListRead.model_validate(await lists_admin.get_list(conn, name=name, now=now))


@router.delete("/{name}", status_code=204, responses=problem_responses(403, 404, 409))
async def delete_list(name: str, by: AdminDep, conn: ConnDep, now: NowDep) -> Response:
    """Delete a list that no rule refers to."""
    await lists_admin.delete_list(conn, name=name, by=by, now=now)
    return Response(status_code=204)


@router.post("/{name}/entries", response_model=EntriesAdded, responses=WRITE_ONE)
async def add_entries(
    name: str, body: EntriesAdd, by: AdminDep, conn: ConnDep, now: NowDep
) -> dict[str, int]:
    """Add entries in bulk, each with an optional note and expiry."""
    return await lists_admin.add_entries(conn, name=name, entries=body.resolved(), by=by, now=now)


@router.delete("/{name}/entries", response_model=EntriesRemoved, responses=WRITE_ONE)
async def remove_entries(
    name: str, body: EntriesRemove, by: AdminDep, conn: ConnDep, now: NowDep
) -> dict[str, int]:
    """Remove entries in bulk by value."""
    return await lists_admin.remove_entries(conn, name=name, values=body.values, by=by, now=now)


@router.post(
    "/{name}/import",
    response_model=EntriesAdded,
    openapi_extra=CSV_BODY,
    responses=problem_responses(400, 403, 404, 413, 422),
)
async def import_csv(
    name: str, text: CsvText, by: AdminDep, conn: ConnDep, now: NowDep
) -> dict[str, int]:
    """Add entries from CSV (value,note,expires_at), as text/csv or a multipart `file`."""
    return await lists_admin.import_csv(conn, name=name, text=text, by=by, now=now)
