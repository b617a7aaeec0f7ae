"""A real VerifyGuard server (`python -m app serve`: uvicorn with httptools) for tests that
need a socket: the schemathesis run and the oversized-body tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from app.services.tokens import issue_token
from app.store.base import create_engine
from tests.support_server import served

BOOTSTRAP = "vg_bootstrap_token_for_live_tests"


def auditor_token(database_url: str) -> str:
    """A stored auditor token (the bootstrap token is an admin's)."""

    async def issue() -> str:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                _, token = await issue_token(
                    conn, name="fuzz-auditor", role="auditor", now=datetime.now(UTC)
                )
            return token
        finally:
            await engine.dispose()

    return asyncio.run(issue())


@contextmanager
def serve(database_url: str, tmp_path: Path, **env: str) -> Iterator[str]:
    """The server's base URL, until the block ends; its log is in tmp_path/server.log."""
    settings = {
        "VERIFYGUARD_BOOTSTRAP_TOKEN": BOOTSTRAP,
        "VERIFYGUARD_DECISION_DEADLINE_MS": "5000",
    }
    with served(database_url, tmp_path, **(settings | env)) as base:
        yield base
