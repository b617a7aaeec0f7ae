"""The console in Debian's Chromium against a real `verifyguard serve`: what a person sees
and does (labels, roles, text), on SQLite, and on PostgreSQL for the overview and the feed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.web.browser import BOOTSTRAP, Server
from tests.web.conftest import console_error, sign_in_as

pytestmark = pytest.mark.browser
PAGES = ("Overview", "Decisions", "Rules", "Lists", "Alerts", "Backtest")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(f"{request.param}_server")
    return server


async def test_sign_in_and_sign_out(page: Page, sqlite_server: Server) -> None:
    base = sqlite_server.base
    await page.goto(base + "/rules")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Token").fill("vg_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    await page.get_by_label("Token").fill(BOOTSTRAP)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Rules")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(base + "/")
    await expect(page).to_have_url(re.compile(r"/sign-in"))


async def test_a_new_decision_appears_in_the_feed_within_5_seconds(
    page: Page, server: Server
) -> None:
    await sign_in_as(page, server.base, BOOTSTRAP)
    await page.get_by_role("link", name="Decisions", exact=True).click()
    await expect(page.get_by_role("heading", name="Decisions")).to_be_visible()
    decided = server.decide("+46701239876")
    row = page.locator(f'tr[data-id="{decided["id"]}"]')
    await expect(row).to_be_visible(timeout=5_000)
    await expect(page.locator("#feed-rows tr").first).to_have_attribute("data-id", decided["id"])
    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=re.compile("Verification"))).to_be_visible()
    await expect(page.get_by_role("heading", name=re.compile("^Decision"))).to_be_visible()


async def test_the_chart_and_its_table_agree_with_audit_stats(page: Page, server: Server) -> None:
    for i in range(3):
        server.decide(f"+4670123450{i}")
    server.decide("+4670123")  # invalid: denied
    await sign_in_as(page, server.base, BOOTSTRAP)
    await expect(page.get_by_role("img", name=re.compile("Decisions over time"))).to_be_visible()
    await page.get_by_text("View as table").click()
    table = page.locator("#chart-table tbody tr")
    rows = [await row.locator("th, td").all_inner_texts() for row in await table.all()]
    stats = server.api("/audit/stats", bucket="hour")
    expected = [r for r in stats["rows"] if r["attempts"]]
    assert len(rows) == len(expected)
    for shown, row in zip(rows, expected, strict=True):
        assert shown[0] == row["bucket"].replace("T", " ")[:19]
        assert [int(x) for x in shown[1:5]] == [
            row["attempts"],
            row["allowed"],
            row["shadowWouldDeny"],
            row["denied"],
        ]
    totals = stats["totals"]
    attempts = page.locator(".metric").filter(has_text="Attempts").locator(".value")
    await expect(attempts).to_have_text(f"{totals['attempts']:,}")


async def test_an_admin_changes_a_rules_mode(page: Page, sqlite_server: Server) -> None:
    await sign_in_as(page, sqlite_server.base, BOOTSTRAP)
    await page.get_by_role("link", name="Rules", exact=True).click()
    await page.get_by_label("Mode of price-ceiling").select_option("shadow")  # saved on change
    await expect(page.get_by_role("status")).to_contain_text("price-ceiling is now in mode shadow")
    await expect(page.get_by_label("Mode of price-ceiling")).to_have_value("shadow")
    policy = sqlite_server.api("/admin/policy")
    rule = next(r for r in policy["rules"] if r["name"] == "price-ceiling")
    assert rule["mode"] == "shadow"
    await page.get_by_label("Mode of price-ceiling").select_option("enforce")
    await expect(page.get_by_role("status")).to_contain_text("now in mode enforce")


async def test_list_add_remove_and_csv_import(
    page: Page, sqlite_server: Server, tmp_path: Path
) -> None:
    await sign_in_as(page, sqlite_server.base, BOOTSTRAP)
    await page.get_by_role("link", name="Lists", exact=True).click()
    blocklist = page.get_by_role("form", name="Add to blocklist")
    await blocklist.get_by_label("Value").fill("+46701112233")
    await blocklist.get_by_label("Note").fill("seen in a pumping run")
    await blocklist.get_by_label("Expires (UTC)").fill("2099-01-01T12:00")
    await blocklist.get_by_role("button", name="Add to blocklist").click()
    await expect(page.get_by_role("status")).to_contain_text("Added +46701112233 to blocklist")
    row = page.get_by_role("row").filter(has_text="+46701112233")
    await expect(row).to_contain_text("seen in a pumping run")
    await expect(row).to_contain_text("2099-01-01 12:00:00")
    csv = tmp_path / "entries.csv"
    csv.write_text("+46701112244,imported,\n+46701112255,imported too,\n")
    await page.get_by_label("CSV file (value,note,expires_at)").first.set_input_files(csv)
    await page.get_by_role("button", name="Import CSV into allowlist").click()
    await expect(page.get_by_role("status")).to_contain_text("Imported 2 entries into allowlist")
    await expect(page.get_by_role("row").filter(has_text="+46701112255")).to_be_visible()
    await page.get_by_role("button", name="Remove +46701112233 from blocklist").click()
    await expect(page.get_by_role("status")).to_contain_text("Removed +46701112233")
    await expect(page.get_by_role("row").filter(has_text="+46701112233")).to_have_count(0)
    listed = sqlite_server.api("/admin/lists/allowlist")
    assert {e["value"] for e in listed["entries"]} >= {"+46701112244", "+46701112255"}


async def test_an_admin_blocks_a_country_in_one_click(page: Page, sqlite_server: Server) -> None:
    sqlite_server.decide("+33612345678")
    await sign_in_as(page, sqlite_server.base, BOOTSTRAP)
    row = page.get_by_role("row").filter(has_text="FR")
    await row.get_by_label("Block FR for").select_option("1h")
    await row.get_by_role("button", name="Block FR").click()
    await expect(page.get_by_role("status")).to_contain_text("FR (+33) is blocked until")
    assert sqlite_server.decide("+33612345679")["action"] == "deny"
    await page.get_by_role("link", name="Lists", exact=True).click()
    await expect(page.get_by_role("heading", name=re.compile("^country-blocklist"))).to_be_visible()
    await expect(page.get_by_role("row").filter(has_text="+33")).to_contain_text("FR blocked")


async def test_an_auditor_reads_masked_numbers_and_cannot_change_anything(
    page: Page, sqlite_server: Server
) -> None:
    decided = sqlite_server.decide("+46709998877")
    _, token = await sqlite_server.token("auditor-eve", "auditor")
    await sign_in_as(page, sqlite_server.base, token)
    await page.get_by_role("link", name="Decisions", exact=True).click()
    row = page.locator(f'tr[data-id="{decided["id"]}"]')
    await expect(row).to_contain_text("+4670****877")
    assert "+46709998877" not in await page.content()
    await page.get_by_role("link", name="Rules", exact=True).click()
    await expect(page.get_by_role("combobox")).to_have_count(0)
    await expect(page.get_by_role("button", name="Save")).to_have_count(0)
    await page.get_by_role("link", name="Lists", exact=True).click()
    await expect(page.get_by_role("button", name=re.compile("^(Add|Remove|Import)"))).to_have_count(
        0
    )
    await page.get_by_role("link", name="Overview", exact=True).click()
    await expect(page.get_by_role("button", name=re.compile("^Block"))).to_have_count(0)


async def test_a_forged_form_is_refused(
    page: Page, sqlite_server: Server, console_errors: list[str]
) -> None:
    await sign_in_as(page, sqlite_server.base, BOOTSTRAP)
    await page.get_by_role("link", name="Lists", exact=True).click()
    await page.locator('form[aria-label="Add to blocklist"] input[name="csrf"]').evaluate(
        "input => { input.value = 'forged'; }"
    )
    form = page.get_by_role("form", name="Add to blocklist")
    await form.get_by_label("Value").fill("+46701114455")
    await form.get_by_role("button", name="Add to blocklist").click()
    await expect(page.get_by_role("alert")).to_contain_text("stale or forged")
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ]
    console_errors.clear()
    assert "+46701114455" not in str(sqlite_server.api("/admin/lists/blocklist"))


async def test_revoking_the_token_ends_the_session(page: Page, sqlite_server: Server) -> None:
    token_id, token = await sqlite_server.token("admin-dan", "admin")
    await sign_in_as(page, sqlite_server.base, token)
    await sqlite_server.revoke(token_id)
    await page.get_by_role("link", name="Rules", exact=True).click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


@pytest.mark.parametrize("width", [1280, 390])
async def test_every_page_renders_without_errors(
    browser: Browser, sqlite_server: Server, width: int, screenshots: Path
) -> None:
    for number in ("+46701237777", "+46701237778", "+4915123456789", "+4670123"):
        sqlite_server.decide(number)  # allowed in two countries, one denied (invalid)
    shots = screenshots
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if console_error(m) else None)
    await page.goto(sqlite_server.base + "/sign-in")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.screenshot(path=shots / f"console-sign-in-{width}.png")
    await sign_in_as(page, sqlite_server.base, BOOTSTRAP)
    for name in PAGES:
        await page.goto(sqlite_server.base + ("/" if name == "Overview" else f"/{name.lower()}"))
        await expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        await page.screenshot(path=shots / f"console-{name.lower()}-{width}.png")  # the viewport
        await no_sideways_scroll(page, name, width)
    await page.goto(sqlite_server.base + "/rules")
    await page.locator('a[href^="/rules/"]').first.click()
    await expect(page.get_by_role("heading", name=re.compile("^Rule "))).to_be_visible()
    await page.screenshot(path=shots / f"console-rule-editor-{width}.png")
    await no_sideways_scroll(page, "A rule's editor", width)
    await context.close()
    assert not errors, errors


async def no_sideways_scroll(page: Page, name: str, width: int) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    assert not overflow, f"{name} scrolls sideways at {width} px"
