"""Polling pages and the audit log: a page view is always logged, its polls (the feed's rows,
the overview's panels) once per session and filter set every few minutes; the overview's
panels show what the page shows. HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sinch import samples
from app.store.models import AuditLogRow
from app.web.polls import PollLog
from tests.support import SinchSender
from tests.web.conftest import BOOTSTRAP, sign_in

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


async def _logged(engine: AsyncEngine, path: str) -> int:
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(AuditLogRow).where(AuditLogRow.path == path)
        return int((await conn.execute(stmt)).scalar_one())


async def test_a_polled_feed_is_logged_once_per_session_and_filter_set(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await sign_in(client, BOOTSTRAP)
    for _ in range(5):
        assert (await client.get("/decisions/rows")).status_code == 200
    assert await _logged(engine, "/decisions/rows") == 1
    for _ in range(3):
        assert (await client.get("/decisions/rows", params={"action": "deny"})).status_code == 200
    assert await _logged(engine, "/decisions/rows") == 2, "another filter set is logged once"

    for _ in range(2):
        assert (await client.get("/decisions")).status_code == 200
    assert await _logged(engine, "/decisions") == 2, "page views are always logged"

    client.cookies.clear()
    await sign_in(client, BOOTSTRAP)  # a new session logs its first poll
    assert (await client.get("/decisions/rows")).status_code == 200
    assert await _logged(engine, "/decisions/rows") == 3


async def test_the_overview_polls_its_panels_logged_once(
    client: AsyncClient, engine: AsyncEngine, sinch: SinchSender
) -> None:
    for n in range(3):
        event = samples.request_event(number=f"+4670123456{n}")
        assert (await sinch.post(event)).status_code == 200
    await sign_in(client, BOOTSTRAP)
    page = await client.get("/", params={"period": "7d"})
    assert page.status_code == 200
    assert 'data-poll="/overview/live?period=7d&amp;sort=attempts"' in page.text
    assert await _logged(engine, "/") == 1, "one read logged per page view"
    for _ in range(4):
        panels = await client.get("/overview/live", params={"period": "7d", "sort": "attempts"})
        assert panels.status_code == 200
        assert "<html" not in panels.text
    assert await _logged(engine, "/overview/live") == 1

    def attempts(html: str) -> str:
        found = re.search(r"<dt>Attempts</dt>\s*<dd class=\"value\">([^<]+)</dd>", html)
        assert found is not None
        return found.group(1)

    assert attempts(panels.text) == attempts(page.text) == "3"


def test_the_poll_log_logs_again_after_its_interval_and_stays_bounded() -> None:
    polls = PollLog(every=timedelta(minutes=5), limit=4)
    one = {"session": "s1", "path": "/decisions/rows", "query": {"action": "deny"}}
    assert polls.due(**one, at=AT)
    assert not polls.due(**one, at=AT + timedelta(minutes=4, seconds=59))
    assert polls.due(**one, at=AT + timedelta(minutes=5))
    assert polls.due(session="s2", path="/decisions/rows", query={"action": "deny"}, at=AT)
    assert polls.due(session="s1", path="/decisions/rows", query={}, at=AT)
    for n in range(10):  # more sessions than the limit: it keeps working, and stays small
        assert polls.due(session=f"x{n}", path="/", query={}, at=AT + timedelta(minutes=6))
        assert len(polls._logged) <= 4
