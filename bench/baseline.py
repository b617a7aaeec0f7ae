"""The baseline: a bare FastAPI endpoint that stores the raw body with one asyncpg INSERT
and answers allow. What any callback receiver costs before it decides anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request, Response

DSN_VARIABLE = "BENCH_BASELINE_DSN"
TABLE = """CREATE TABLE IF NOT EXISTS baseline_events (
    id bigserial PRIMARY KEY, verification_id text, body bytea,
    received_at timestamptz NOT NULL DEFAULT now())"""
ALLOW = json.dumps({"action": "allow"}).encode()


def create_baseline() -> FastAPI:
    """Reads the PostgreSQL DSN (asyncpg form) from BENCH_BASELINE_DSN."""
    dsn = os.environ[DSN_VARIABLE]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        async with pool.acquire() as conn:
            await conn.execute(TABLE)
        app.state.pool = pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/sinch/verification/events")
    async def event(request: Request) -> Response:
        body = await request.body()
        ident = json.loads(body).get("id")
        await request.app.state.pool.execute(
            "INSERT INTO baseline_events (verification_id, body) VALUES ($1, $2)", ident, body
        )
        return Response(ALLOW, media_type="application/json")

    return app
