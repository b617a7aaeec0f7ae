"""The loop watch (bench/loop_watch.py) must not make the collections it reports: what it
keeps per callback, until its next flush, is not tracked by the garbage collector."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient

from app.api.callbacks import CallbackFirst
from app.main import create_app
from app.sinch import samples
from bench.loop_watch import Watch
from tests.conftest import make_settings
from tests.support import SinchSender


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_watch_keeps_each_callbacks_record_untracked(
    database_url: str, tmp_path: Path
) -> None:
    watch = Watch(str(tmp_path / "watch"))
    serve = CallbackFirst._serve_callback
    watch.patch_callbacks(CallbackFirst)
    try:
        settings = make_settings(database_url, tmp_path)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = ASGITransport(app=app)
            async with AsyncClient(transport=transport, base_url="http://guard.test") as http:
                sender = SinchSender(http, path=settings.callback_path)
                for i in range(20):
                    event = samples.request_event(number=f"+4670123{i:04d}")
                    assert (await sender.post(event)).status_code == 200
    finally:
        CallbackFirst._serve_callback = serve  # type: ignore[method-assign]

    assert len(watch.requests) == 20
    assert not any(gc.is_tracked(record) for record in watch.requests)
    watch.flush_requests()  # the file soak_profile reads: a record per line, as before
    lines = (tmp_path / "watch.requests").read_text().splitlines()
    assert [len(json.loads(line)) for line in lines] == [6] * 20
