"""Real servers and Debian's Chromium for the browser tests: a `verifyguard serve` process on
a database of its own, signed callbacks posted to it, tokens stored in its database."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from app.services.tokens import Role, issue_token
from app.sinch import samples
from app.sinch.signature import callback_headers
from app.store import tokens as token_store
from app.store.base import create_engine
from app.store.migrate import upgrade
from tests.support import TEST_APP_KEY, TEST_APP_SECRET
from tests.support_server import served

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BOOTSTRAP = "vg_browser-bootstrap-token"
CALLBACK = "/sinch/verification/events"


@dataclass
class Server:
    base: str
    database_url: str

    def decide(self, number: str, **event: Any) -> dict[str, Any]:
        body = json.dumps(samples.request_event(number=number, **event)).encode()
        headers = callback_headers(
            key=TEST_APP_KEY,
            secret_b64=TEST_APP_SECRET,
            body=body,
            path=CALLBACK,
            now=datetime.now(UTC),
        )
        response = httpx.post(f"{self.base}{CALLBACK}", content=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return {"id": json.loads(body)["id"], **response.json()}

    def api(self, path: str, **params: Any) -> Any:
        headers = {"authorization": f"Bearer {BOOTSTRAP}"}
        response = httpx.get(f"{self.base}{path}", params=params, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    async def token(self, name: str, role: Role) -> tuple[int, str]:
        engine = create_engine(self.database_url)
        try:
            async with engine.begin() as conn:
                return await issue_token(conn, name=name, role=role, now=datetime.now(UTC))
        finally:
            await engine.dispose()

    async def revoke(self, token_id: int) -> None:
        engine = create_engine(self.database_url)
        try:
            async with engine.begin() as conn:
                await token_store.revoke(conn, token_id, now=datetime.now(UTC))
        finally:
            await engine.dispose()


def sqlite_database(template: Path, directory: Path) -> str:
    path = directory / "console.db"
    shutil.copy(template, path)
    return f"sqlite+aiosqlite:///{path}"


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A database of its own (other tests truncate the shared one)."""
    name = f"vg_web_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    url = f"{server_url.rsplit('/', 1)[0]}/{name}"
    upgrade(url)
    try:
        yield url
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, sql: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextmanager
def serve(database_url: str, workdir: Path) -> Iterator[Server]:
    settings = {
        "VERIFYGUARD_BOOTSTRAP_TOKEN": BOOTSTRAP,
        "VERIFYGUARD_DECISION_DEADLINE_MS": "5000",
        # Pages compare the overview with /audit/stats at once: never serve a kept one.
        "VERIFYGUARD_CONSOLE_OVERVIEW_SLOW_MS": "1e9",
    }
    with served(database_url, workdir, **settings) as base:
        yield Server(base, database_url)
