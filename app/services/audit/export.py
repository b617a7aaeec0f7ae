"""Streamed CSV / NDJSON export: keyset chunks, each on a short connection, so memory stays flat.

The query is logged in a short transaction of the writer; rows are then read chunk by chunk,
newest first, while the response streams, each chunk on a connection `connect` opens (the
runtime's reader: on a SQLite file beside the one connection request events are decided
on). Rows that arrive meanwhile are newer and not included.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.audit.queries import AuditContext, record_apart
from app.services.audit.view import EXPORT_FIELDS, export_row
from app.store import audit as store
from app.store.audit import AuditFilter, Cursor

Format = Literal["csv", "ndjson"]
Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
CHUNK_ROWS = 1000
_MEDIA = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


@dataclass(frozen=True, slots=True)
class Export:
    media_type: str
    filename: str
    chunks: AsyncIterator[bytes]


async def export(
    *,
    writer: AsyncEngine,
    connect: Connect,
    ctx: AuditContext,
    filters: AuditFilter,
    fmt: Format,
    chunk_rows: int = CHUNK_ROWS,
) -> Export:
    """Log the export, then hand back a stream that reads `chunk_rows` rows at a time."""
    await record_apart(writer, ctx)
    stamp = ctx.at.strftime("%Y%m%dT%H%M%SZ")
    chunks = export_chunks(connect, filters, fmt=fmt, reveal=ctx.reveal, chunk_rows=chunk_rows)
    return Export(_MEDIA[fmt], f"verifications-{stamp}.{fmt}", chunks)


async def export_chunks(
    connect: Connect, filters: AuditFilter, *, fmt: Format, reveal: bool, chunk_rows: int
) -> AsyncIterator[bytes]:
    encode = _csv if fmt == "csv" else _ndjson
    if fmt == "csv":
        yield _csv([dict(zip(EXPORT_FIELDS, EXPORT_FIELDS, strict=True))])
    cursor: Cursor | None = None
    while True:
        async with connect() as conn:
            rows = await store.search(conn, filters, cursor=cursor, limit=chunk_rows)
        if rows:
            yield encode([export_row(row, reveal=reveal) for row in rows])
        if len(rows) < chunk_rows:
            return
        last = rows[-1]
        assert last.requested_at is not None  # a search lists requested verifications only
        cursor = Cursor(requested_at=last.requested_at, id=last.id)


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _ndjson(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()
