"""A `json` parameter on a PostgreSQL engine's connections takes JSON already encoded as
UTF-8 bytes as it is (the request path's store batches send pydantic's bytes), a str as
before, and reads back as SQLAlchemy's codec does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.base import create_engine
from app.store.pg_fastpath import driver

pytestmark = pytest.mark.postgres

DOCUMENT = {"text": "velocity 4 \u00d7 verified", "n": [1, 2.5, None, True]}


@pytest.fixture(params=[False, True], ids=["pooled", "autocommit"])
async def conn(
    postgres_database: str, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncConnection]:
    engine = create_engine(postgres_database, autocommit=request.param)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


async def test_json_parameters_take_encoded_bytes_and_text(conn: AsyncConnection) -> None:
    apg = await driver(conn)
    encoded = json.dumps(DOCUMENT, ensure_ascii=False)
    for value in (encoded.encode(), encoded):
        assert await apg.fetchval("SELECT $1::json ->> 'text'", value) == DOCUMENT["text"]
        assert await apg.fetchval("SELECT $1::json", value) == DOCUMENT
    array = [encoded.encode(), encoded, None]
    texts = await apg.fetchval("SELECT array_agg(d ->> 'text') FROM unnest($1::json[]) d", array)
    assert texts == [DOCUMENT["text"], DOCUMENT["text"], None]


async def test_json_read_back_through_sqlalchemy_as_before(conn: AsyncConnection) -> None:
    row = (
        await conn.execute(text("SELECT CAST(:d AS json) AS d"), {"d": json.dumps(DOCUMENT)})
    ).one()
    assert row.d == DOCUMENT
