"""Console sessions over HTTP: sign-in, the cookie's flags, redirects, CSRF, roles,
revocation, sign-out, the development link, security headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import tokens as token_store
from tests.web.conftest import BOOTSTRAP, csrf_of, sign_in, stored_token


@pytest.mark.parametrize("path", ["/", "/decisions", "/rules", "/lists", "/alerts", "/backtest"])
async def test_pages_send_the_signed_out_to_sign_in(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/sign-in")


async def test_sign_in_sets_a_strict_httponly_expiring_cookie(client: AsyncClient) -> None:
    response = await sign_in(client, BOOTSTRAP)
    assert response.status_code == 303
    cookie = next(c for c in response.headers.get_list("set-cookie") if "vg_session=" in c)
    cookie = cookie.lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "max-age=28800" in cookie
    assert "secure" not in cookie  # plain http (development)
    page = await client.get("/")
    assert page.status_code == 200
    assert "<h1>Overview</h1>" in page.text


async def test_the_cookie_is_secure_behind_https(client: AsyncClient) -> None:
    app = client.app  # type: ignore[attr-defined]
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="https://console.test") as https:
        response = await sign_in(https, BOOTSTRAP)
    cookie = next(c for c in response.headers.get_list("set-cookie") if "vg_session=" in c)
    assert "secure" in cookie.lower()


async def test_an_unknown_token_is_refused(client: AsyncClient) -> None:
    response = await sign_in(client, "vg_not-a-token")
    assert response.status_code == 401
    assert "vg_session" not in response.headers.get("set-cookie", "")
    assert "unknown or revoked" in response.text


async def test_a_forged_cookie_is_no_session(client: AsyncClient) -> None:
    client.cookies.set("vg_session", "eyJ0b2tlbiJ9.forged.signature")
    assert (await client.get("/")).status_code == 303


async def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(
    client: AsyncClient,
) -> None:
    await sign_in(client, BOOTSTRAP)
    form = {"value": "+46701110001", "note": "csrf"}
    for token in (None, "0" * 64):
        data = form if token is None else {**form, "csrf": token}
        refused = await client.post("/lists/blocklist/entries", data=data)
        assert refused.status_code == 403
        assert "stale or forged" in refused.text
    page = await client.get("/lists")
    assert "+46701110001" not in page.text
    done = await client.post("/lists/blocklist/entries", data={**form, "csrf": csrf_of(page)})
    assert done.status_code == 303
    assert "+46701110001" in (await client.get("/lists")).text


async def test_the_csrf_token_of_one_session_does_not_serve_another(
    client: AsyncClient,
) -> None:
    await sign_in(client, BOOTSTRAP)
    old = csrf_of(await client.get("/lists"))
    client.cookies.clear()
    await sign_in(client, BOOTSTRAP)
    response = await client.post(
        "/lists/blocklist/entries", data={"value": "+46701110002", "csrf": old}
    )
    assert response.status_code == 403


async def test_an_auditor_reads_but_cannot_change(client: AsyncClient, engine: AsyncEngine) -> None:
    _, token = await stored_token(engine, "bob", "auditor")
    await sign_in(client, token)
    rules = await client.get("/rules")
    assert rules.status_code == 200
    assert "Mode of" not in rules.text
    csrf = csrf_of(rules)
    refused = await client.post("/rules/1/mode", data={"mode": "off", "csrf": csrf})
    assert refused.status_code == 403
    refused = await client.post(
        "/lists/blocklist/entries", data={"value": "+46701110003", "csrf": csrf}
    )
    assert refused.status_code == 403
    refused = await client.post("/countries/block", data={"country": "SE", "csrf": csrf})
    assert refused.status_code == 403
    assert "+46701110003" not in (await client.get("/lists")).text


async def test_revoking_a_token_ends_its_sessions(client: AsyncClient, engine: AsyncEngine) -> None:
    token_id, token = await stored_token(engine, "carol", "admin")
    await sign_in(client, token)
    assert (await client.get("/rules")).status_code == 200
    async with engine.begin() as conn:
        assert await token_store.revoke(conn, token_id, now=datetime.now(UTC))
    response = await client.get("/rules")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/rules"


async def test_sign_out_ends_the_session(client: AsyncClient) -> None:
    await sign_in(client, BOOTSTRAP)
    csrf = csrf_of(await client.get("/"))
    response = await client.post("/sign-out", data={"csrf": csrf})
    assert response.status_code == 303
    assert any('vg_session=""' in c for c in response.headers.get_list("set-cookie"))
    assert (await client.get("/")).status_code == 303


async def test_sign_in_returns_to_the_page_asked_for_but_only_on_this_site(
    client: AsyncClient,
) -> None:
    response = await sign_in(client, BOOTSTRAP, next="/rules")
    assert response.headers["location"] == "/rules"
    response = await sign_in(client, BOOTSTRAP, next="//evil.example/")
    assert response.headers["location"] == "/"


async def test_a_sign_in_form_from_elsewhere_is_refused(client: AsyncClient) -> None:
    """Login CSRF: a form posted without the key the sign-in page set is refused."""
    response = await client.post("/sign-in", data={"token": BOOTSTRAP, "form_key": "x"})
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert (await client.get("/")).status_code == 303


async def test_every_console_response_has_the_security_headers(client: AsyncClient) -> None:
    for path in ("/sign-in", "/static/console.js"):
        response = await client.get(path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


async def test_console_pages_are_not_in_the_openapi_document(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.split("/")[1] in {"sign-in", "rules", "lists"}]
    assert "/admin/rules" in paths
