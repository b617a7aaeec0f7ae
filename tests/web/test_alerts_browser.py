"""The Alerts page in Debian's Chromium against a real `verifyguard serve` on SQLite: an
admin lifts a containment by clicking, and the number it blocked is no longer contained."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from app.store import alerts as alert_store
from app.store.base import create_engine
from tests.web.browser import BOOTSTRAP, Server
from tests.web.conftest import sign_in_as

pytestmark = pytest.mark.browser
NUMBER = "+46701236655"


async def contain(server: Server, number: str, status: str = "active") -> int:
    """A containment of one number, stored as the evaluator stores one."""
    now = datetime.now(UTC)
    engine = create_engine(server.database_url)
    try:
        async with engine.begin() as conn:
            return await alert_store.add_containment(
                conn,
                key="number",
                value=number,
                alert=None,
                status=status,
                duration_seconds=3600,
                created_at=now,
                created_by="test",
                expires_at=now + timedelta(hours=1) if status == "active" else None,
                updated_at=now,
            )
    finally:
        await engine.dispose()


async def until_contained(
    server: Server, number: str, contained: bool, within: float = 3.0
) -> bool:
    """Request events for `number` until one is (or is not) denied by a containment (the
    watcher polls). Other rules may deny it too: the starter denies a number asked for
    again and again without verifying, so the stored reason tells, not the answer."""
    started = time.monotonic()
    while True:
        ident = server.decide(number)["id"]
        reason = server.api(f"/audit/verifications/id/{ident}")["decision"]["reason"]
        if (reason == "contained") == contained or time.monotonic() - started > within:
            return reason == "contained"
        await asyncio.sleep(0.2)


async def test_an_admin_lifts_a_containment_and_the_number_is_no_longer_contained(
    page: Page, sqlite_server: Server, screenshots: Path
) -> None:
    containment_id = await contain(sqlite_server, NUMBER)
    assert await until_contained(sqlite_server, NUMBER, contained=True)
    await sign_in_as(page, sqlite_server.base, BOOTSTRAP)
    await page.get_by_role("link", name="Alerts", exact=True).click()
    await expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    row = page.locator(f'tr[data-containment="{containment_id}"]')
    await expect(row).to_contain_text(NUMBER)
    await expect(row).to_contain_text("active")
    await page.screenshot(path=screenshots / "console-alerts-containment-1280.png")
    await row.get_by_role("button", name=f"Lift containment {containment_id}").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Containment {containment_id} lifted")
    await expect(row).to_contain_text("lifted")
    await expect(row).to_contain_text("by bootstrap")
    await expect(row.get_by_role("button")).to_have_count(0)
    [stored] = [c for c in sqlite_server.api("/admin/containments") if c["id"] == containment_id]
    assert (stored["status"], stored["lifted_by"]) == ("lifted", "bootstrap")
    assert not await until_contained(sqlite_server, NUMBER, contained=False)
