"""Console fixtures: the app with a bootstrap token, stored admin and auditor tokens, and a
way to sign a client in and read the CSRF token off a page."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from httpx import AsyncClient, Response
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.tokens import Role, issue_token
from app.settings import Settings
from tests.conftest import POSTGRES_URL, REQUIRE, _missing, make_settings
from tests.web.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    postgres_database,
    serve,
    sqlite_database,
)

BOOTSTRAP = "vg_console-bootstrap-token-for-tests"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, bootstrap_token=BOOTSTRAP)


async def stored_token(engine: AsyncEngine, name: str, role: Role) -> tuple[int, str]:
    async with engine.begin() as conn:
        return await issue_token(conn, name=name, role=role, now=datetime.now(UTC))


FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


async def sign_in(client: AsyncClient, token: str, next: str = "/") -> Response:
    """Sign in as a browser does: the sign-in page first (it sets the form's key)."""
    page = await client.get("/sign-in")
    found = FORM_KEY.search(page.text)
    assert found is not None
    data = {"token": token, "next": next, "form_key": found.group(1)}
    return await client.post("/sign-in", data=data)


def csrf_of(page: Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def chromium_present() -> bool:
    return Path(CHROMIUM).exists()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the page tests save their screenshots (VERIFYGUARD_TEST_SCREENSHOTS, or tmp)."""
    shots = Path(os.environ.get("VERIFYGUARD_TEST_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the whole session (Debian's; Playwright downloads nothing)."""
    if not chromium_present():
        if REQUIRE:
            pytest.fail(f"{CHROMIUM} is required (VERIFYGUARD_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture(scope="module")
def sqlite_server(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("console-sqlite")
    with serve(sqlite_database(sqlite_template, workdir), workdir) as server:
        yield server


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not POSTGRES_URL:
        _missing("postgres")
    assert POSTGRES_URL is not None
    workdir = tmp_path_factory.mktemp("console-postgres")
    with postgres_database(POSTGRES_URL) as url, serve(url, workdir) as server:
        yield server


@pytest.fixture
def console_errors() -> list[str]:
    """What the browser's console said in error; a test that provokes one removes it."""
    return []


@pytest.fixture
async def page(browser: Browser, console_errors: list[str]) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) whose console errors fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors = console_errors
    page.on("console", lambda m: errors.append(m.text) if console_error(m) else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(10_000)
    yield page
    await context.close()
    assert not errors, f"console errors: {errors}"


def console_error(message: ConsoleMessage) -> bool:
    """An error in the browser's console; a refused sign-in (401, on purpose) is none."""
    refused = message.location.get("url", "").endswith("/sign-in") and "401" in message.text
    return message.type == "error" and not refused


async def sign_in_as(page: Page, base: str, token: str) -> None:
    await page.goto(base + "/")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
