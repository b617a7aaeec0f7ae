"""Apps built in one process share nothing: each has its own metrics and request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from httpx import ASGITransport, AsyncClient

from app.main import create_app
from app.sinch import samples
from tests.conftest import make_settings
from tests.ops.scrape import sample
from tests.support import SinchSender

NUMBER = "+46701234567"


@asynccontextmanager
async def _served(database_url: str, tmp_path: Path) -> AsyncIterator[SinchSender]:
    settings = make_settings(database_url, tmp_path)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://guard.test") as http:
            yield SinchSender(http, path=settings.callback_path)


async def test_two_apps_in_one_process_keep_separate_metrics(
    database_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(_served(database_url, tmp_path / "first"))
        second = await stack.enter_async_context(_served(database_url, tmp_path / "second"))
        assert (await first.post(samples.request_event(number=NUMBER))).status_code == 200
        await first.post(samples.request_event(number=NUMBER), secret="AAAAAAAAAAAAAAAAAAAAAA==")
        mine = (await first.client.get("/metrics")).text
        theirs = (await second.client.get("/metrics")).text

    decided = {"event": "request", "outcome": "decided"}
    assert sample(mine, "verifyguard_callbacks_total", **decided) == 1
    assert sample(mine, "verifyguard_decision_seconds_count") == 1
    assert sample(mine, "verifyguard_signature_failures_total", cause="bad_signature") == 1
    assert sample(theirs, "verifyguard_callbacks_total", **decided) == 0
    assert sample(theirs, "verifyguard_decision_seconds_count") == 0
    assert sample(theirs, "verifyguard_signature_failures_total", cause="bad_signature") == 0
    assert "verifyguard_decisions_total{" not in theirs
    for other in ("python_gc_objects_collected_total", "python_info"):  # as the default registry
        assert other in mine and other in theirs


async def test_request_ids_are_numbered_per_app(database_url: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(_served(database_url, tmp_path / "first"))
        second = await stack.enter_async_context(_served(database_url, tmp_path / "second"))
        ids = [
            (await sender.client.get("/healthz")).headers["x-request-id"]
            for sender in (first, first, second)
        ]
    assert [i.rsplit("-", 1)[1] for i in ids] == ["1", "2", "1"]
    assert ids[0].split("-")[0] != ids[2].split("-")[0]
