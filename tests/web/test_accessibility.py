"""axe-core (vendored, tests/web/vendor) finds no serious or critical violation on any
console page, for an admin and for an auditor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from tests.web.browser import BOOTSTRAP, Server
from tests.web.conftest import sign_in_as
from tests.web.test_alerts_browser import contain

pytestmark = pytest.mark.browser
VENDOR = Path(__file__).parent / "vendor"
AXE = VENDOR / "axe.min.js"
PATHS = ("/", "/decisions", "/rules", "/lists", "/alerts", "/backtest", "/sign-in")


def test_the_vendored_files_match_their_manifest() -> None:
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    for name, entry in manifest.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("role", ["admin", "auditor"])
async def test_no_serious_or_critical_violations(
    browser: Browser, sqlite_server: Server, role: str
) -> None:
    decided = sqlite_server.decide("+46701235555")
    await contain(sqlite_server, "+46701235556")  # the Alerts page with its forms
    await contain(sqlite_server, "+46701235557", status="proposed")
    token = BOOTSTRAP if role == "admin" else (await sqlite_server.token("a11y", "auditor"))[1]
    # axe is injected as an inline script, which the console's CSP rightly refuses.
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await sign_in_as(page, sqlite_server.base, token)
    found: dict[str, list[str]] = {}
    for path in (*PATHS, "/rules/1", f"/decisions/{decided['id']}"):
        await page.goto(sqlite_server.base + path)
        await page.add_script_tag(path=AXE)
        result: dict[str, Any] = await page.evaluate("axe.run(document)")
        assert result["passes"], f"axe checked nothing on {path}"
        bad = [
            f"{v['id']}: {v['help']} ({len(v['nodes'])})"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if bad:
            found[path] = bad
    await context.close()
    assert not found
