"""The Backtest page in Debian's Chromium against a real `verifyguard serve` on SQLite: an
admin edits the live policy, starts a backtest by clicking, follows it and reads the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from playwright.async_api import Page, expect

from tests.web.browser import BOOTSTRAP, Server
from tests.web.conftest import sign_in_as

pytestmark = pytest.mark.browser
BLOCK_FR = {
    "name": "block-fr",
    "action": "deny",
    "reason": "fr_blocked",
    "priority": 1,
    "when": {"field": "country", "op": "eq", "value": "FR"},
}


async def test_an_admin_starts_a_backtest_by_clicking_and_reads_the_report(
    page: Page, sqlite_server: Server, screenshots: Path
) -> None:
    for number in ("+33612340001", "+33612340002", "+46701230003"):
        assert sqlite_server.decide(number)["action"] == "allow"
    await sign_in_as(page, sqlite_server.base, BOOTSTRAP)
    await page.get_by_role("link", name="Backtest", exact=True).click()
    await expect(page.get_by_role("heading", name="Backtest", exact=True)).to_be_visible()
    editor = page.get_by_label(re.compile("^Candidate policy as YAML"))
    live = yaml.safe_load(await editor.input_value())
    live["rules"] = [BLOCK_FR, *live["rules"]]
    await editor.fill(yaml.safe_dump(live, sort_keys=False))
    await page.get_by_label("History to replay").select_option("24h")
    await page.get_by_role("button", name="Start backtest").click()
    await expect(page.get_by_role("heading", name=re.compile(r"^Backtest \d+"))).to_be_visible()
    # The page reloads every 2 s while the child process replays; starting it can be slow.
    report = page.get_by_role("heading", name="Report", exact=True)
    await expect(report).to_be_visible(timeout=120_000)
    backtest_id = int(page.url.split("?")[0].rsplit("/", 1)[1])
    stored = sqlite_server.api(f"/admin/backtest/{backtest_id}")
    assert stored["status"] == "done"
    result = stored["result"]
    assert result["attempts"] == 3 and result["caught"] == 2
    await expect(page.locator('[data-key="attempts"]')).to_have_text("3")
    await expect(page.locator('[data-key="caught"]')).to_have_text("2")
    await expect(page.locator('[data-key="allow_to_deny"]')).to_have_text("2")
    await expect(page.locator('tr[data-rule="block-fr"]')).to_contain_text("2")
    await expect(page.locator('tr[data-country="FR"]')).to_be_visible()
    await page.screenshot(path=screenshots / "console-backtest-report-1280.png")
    await page.get_by_role("link", name="← Backtests").click()
    row = page.locator(f'tr[data-backtest="{backtest_id}"]')
    await expect(row).to_contain_text("done")
    await expect(row).to_contain_text("100 %")
    await page.screenshot(path=screenshots / "console-backtest-runs-1280.png")
