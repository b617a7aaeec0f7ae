"""Alert fixtures: apps sharing one database (workers), a real webhook receiver, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.api.deps import Runtime
from app.main import create_app
from app.services.tokens import issue_token
from app.settings import Settings
from tests.alerts.receiver import Receiver, Served
from tests.conftest import make_settings

BOOTSTRAP = "vg_bootstrap-token-for-alert-tests"
ADMIN = {"Authorization": f"Bearer {BOOTSTRAP}"}


def alert_settings(database_url: str, tmp_path: Path, **alerts: Any) -> Settings:
    """Evaluation and delivery are driven by the tests (with their own clock); the
    containment watcher runs as in production."""
    return make_settings(
        database_url,
        tmp_path,
        bootstrap_token=BOOTSTRAP,
        alerts={"enabled": False, **alerts},
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return alert_settings(database_url, tmp_path)


Worker = Callable[[], AbstractAsyncContextManager[AsyncClient]]


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Worker:
    """Another app on the same database: a second worker process, as far as state goes."""
    count = 0

    @asynccontextmanager
    async def open_worker() -> AsyncIterator[AsyncClient]:
        nonlocal count
        count += 1
        spool = tmp_path / f"spool-{count}"
        app = create_app(settings.model_copy(update={"spool_dir": spool}))
        async with app.router.lifespan_context(app):
            transport = ASGITransport(app=app, raise_app_exceptions=False)
            async with AsyncClient(transport=transport, base_url="http://worker.test") as http:
                http.app = app  # type: ignore[attr-defined]
                yield http

    return open_worker


def runtime_of(client: AsyncClient) -> Runtime:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    served = Served(hooks)
    await served.start()
    yield hooks
    await served.stop()


async def auditor_headers(client: AsyncClient) -> dict[str, str]:
    async with runtime_of(client).engine.begin() as conn:
        _, token = await issue_token(conn, name="bob", role="auditor", now=datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}
