"""Dependencies of the /admin API: the request's connection and clock, raw policy and CSV bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import UploadFile

from app.api.deps import RuntimeDep, SessionDep
from app.errors import AppError, BadRequest, Unprocessable
from app.rules.conditions import INT32_MAX
from app.services.policy.io import Format, load_document

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"", "application/json"})


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


async def connection(session: SessionDep) -> AsyncConnection:
    """The request's transaction (committed before the response, rolled back on error)."""
    return await session.connection()


async def read_connection(runtime: RuntimeDep) -> AsyncIterator[AsyncConnection]:
    """A read's connection, on the runtime's reader (store/base.py `create_reader`): on a
    SQLite file beside the one connection request events are decided on, so reading a
    blocklist of a hundred thousand entries or a policy's history during an attack holds no
    decision back; elsewhere the engine's, as a write's. One snapshot; given back before
    the response is sent."""
    async with runtime.reader.connect() as conn:
        yield conn


def request_time() -> datetime:
    """Taken once per request and passed down."""
    return datetime.now(UTC)


async def policy_document(request: Request) -> Any:
    """The body as JSON or YAML, by its Content-Type."""
    media = _media_type(request)
    fmt: Format
    if media in YAML_TYPES:
        fmt = "yaml"
    elif media in JSON_TYPES or media.endswith("+json"):
        fmt = "json"
    else:
        raise UnsupportedMediaType(f"send application/json or application/yaml, not {media}")
    return load_document(_text(await request.body()), fmt)


async def csv_text(request: Request) -> str:
    """CSV from a text/csv body or from the `file` field of a multipart form."""
    if _media_type(request) != "multipart/form-data":
        return _text(await request.body())
    async with request.form() as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Unprocessable(
                "the form needs a CSV file in the field 'file'",
                errors=[{"loc": "file", "msg": "Field required"}],
            )
        return _text(await upload.read())


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text", code="malformed_body") from None


ConnDep = Annotated[AsyncConnection, Depends(connection)]
ReadDep = Annotated[AsyncConnection, Depends(read_connection, scope="function")]
NowDep = Annotated[datetime, Depends(request_time)]
PolicyDocument = Annotated[Any, Depends(policy_document)]
CsvText = Annotated[str, Depends(csv_text)]
# Ids are 32-bit in the database: a larger one is a 422, never a query that overflows.
RuleId = Annotated[int, Path(ge=1, le=INT32_MAX)]
Revision = Annotated[int, Path(ge=1, le=INT32_MAX)]
ContainmentId = Annotated[int, Path(ge=1, le=INT32_MAX)]
BacktestId = Annotated[int, Path(ge=1, le=INT32_MAX)]
