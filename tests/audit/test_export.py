"""Export: CSV and NDJSON with the search filters, streamed in keyset chunks, masked for auditors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.services.audit.export import export_chunks
from app.services.audit.view import EXPORT_FIELDS
from app.store.audit import AuditFilter
from tests.audit.rows import BASE, audit_log, insert_rows, minutes, row


async def test_csv_export_has_a_header_and_one_line_per_match(
    client: AsyncClient, engine: AsyncEngine, admin: dict[str, str]
) -> None:
    await insert_rows(engine, [row(requested_at=BASE + minutes(i)) for i in range(5)])
    await insert_rows(engine, [row(country="GB", number="+447700900123")])

    response = await client.get("/audit/export", params={"country": "SE"}, headers=admin)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert len(lines) == 5 and tuple(lines[0]) == EXPORT_FIELDS
    assert {line["country"] for line in lines} == {"SE"}
    assert lines[0]["number"] == "+46701234233"
    assert lines[0]["requested_at"] > lines[-1]["requested_at"], "newest first"


async def test_ndjson_export_is_one_json_object_per_line_masked_for_auditors(
    client: AsyncClient, engine: AsyncEngine, auditor: dict[str, str]
) -> None:
    await insert_rows(engine, [row(action="deny", reason="country_blocked"), row()])

    params = {"format": "ndjson", "action": "deny"}
    response = await client.get("/audit/export", params=params, headers=auditor)

    assert response.headers["content-type"] == "application/x-ndjson"
    records = [json.loads(line) for line in response.text.splitlines()]
    assert len(records) == 1
    assert records[0]["reason"] == "country_blocked"
    assert records[0]["number"] == "+4670****233"
    assert (await audit_log(engine))[-1]["query"] == params


async def test_export_crosses_chunks_without_losing_or_repeating_rows(engine: AsyncEngine) -> None:
    rows = [row(requested_at=BASE + minutes(i // 3)) for i in range(10)]
    await insert_rows(engine, rows)

    @asynccontextmanager
    async def connect() -> AsyncIterator[AsyncConnection]:
        async with engine.connect() as conn:
            yield conn

    stream = export_chunks(connect, AuditFilter(), fmt="ndjson", reveal=True, chunk_rows=3)
    chunks = [chunk async for chunk in stream]

    assert len(chunks) == 4, "10 rows in chunks of 3"
    ids = [json.loads(line)["id"] for chunk in chunks for line in chunk.decode().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(set(ids)) == 10


async def test_export_of_nothing_is_just_the_header(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.get("/audit/export", headers=admin)
    assert response.text.strip() == ",".join(EXPORT_FIELDS)
    empty = await client.get("/audit/export", params={"format": "ndjson"}, headers=admin)
    assert empty.text == ""


async def test_unknown_export_format_is_refused(client: AsyncClient, admin: dict[str, str]) -> None:
    response = await client.get("/audit/export", params={"format": "xml"}, headers=admin)
    assert response.status_code == 422
