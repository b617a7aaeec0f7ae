"""Console pages over HTTP, on SQLite and PostgreSQL: what each shows, masking for auditors,
and the changes they make (country block, rule YAML, dry run, restore, CSV import)."""

from __future__ import annotations

import re
from pathlib import Path

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.settings import Settings
from app.sinch import samples
from tests.conftest import make_settings
from tests.support import SinchSender
from tests.web.conftest import BOOTSTRAP, csrf_of, sign_in, stored_token

NUMBER = "+46701234567"


async def test_decisions_show_whole_numbers_to_admins_and_masked_ones_to_auditors(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    event = samples.request_event(number=NUMBER)
    assert (await sinch.post(event)).status_code == 200
    await sign_in(client, BOOTSTRAP)
    admin_page = await client.get("/decisions")
    assert NUMBER in admin_page.text
    assert event["id"] in admin_page.text
    client.cookies.clear()
    _, token = await stored_token(engine, "bob", "auditor")
    await sign_in(client, token)
    for path in ("/decisions", "/decisions/rows", f"/decisions/{event['id']}"):
        page = await client.get(path)
        assert page.status_code == 200
        assert NUMBER not in page.text
        assert "+4670****567" in page.text


async def test_decision_filters_and_the_timeline(client: AsyncClient, sinch: SinchSender) -> None:
    allowed = samples.request_event(number=NUMBER)
    denied = samples.request_event(number="+4670123", method="sms")  # cannot exist
    for event in (allowed, denied):
        assert (await sinch.post(event)).status_code == 200
    await sign_in(client, BOOTSTRAP)
    page = await client.get("/decisions", params={"action": "deny", "country": ""})
    assert denied["id"] in page.text
    assert allowed["id"] not in page.text
    bad = await client.get("/decisions", params={"country": "Sweden"})
    assert bad.status_code == 422
    timeline = await client.get(f"/decisions/{allowed['id']}")
    assert timeline.status_code == 200
    assert "Request" in timeline.text
    assert "Decision" in timeline.text
    assert (await client.get("/decisions/no-such-id")).status_code == 404


async def test_blocking_a_country_denies_its_numbers_until_the_entry_expires(
    client: AsyncClient, sinch: SinchSender
) -> None:
    await sign_in(client, BOOTSTRAP)
    csrf = csrf_of(await client.get("/"))
    response = await client.post(
        "/countries/block", data={"country": "se", "duration": "1h", "csrf": csrf}
    )
    assert response.status_code == 303
    assert "SE+%28%2B46%29+is+blocked+until" in response.headers["location"]
    lists = (await client.get("/lists")).text
    assert "country-blocklist" in lists
    assert "SE blocked from the console by bootstrap" in lists
    answer = await sinch.post(samples.request_event(number=NUMBER))
    assert answer.json()["action"] == "deny"
    policy = (
        await client.get("/admin/policy", headers={"authorization": f"Bearer {BOOTSTRAP}"})
    ).json()
    entry = next(x for x in policy["lists"] if x["name"] == "country-blocklist")["entries"][0]
    assert entry["value"] == "+46"
    assert entry["expires_at"] is not None


async def test_a_rule_edited_as_yaml_is_validated_dry_run_saved_and_restored(
    client: AsyncClient,
) -> None:
    await sign_in(client, BOOTSTRAP)
    rules = await client.get("/rules")
    rule_id = re.search(r'href="/rules/(\d+)">price-ceiling<', rules.text).group(1)  # type: ignore[union-attr]
    page = await client.get(f"/rules/{rule_id}")
    csrf = csrf_of(page)
    yaml_text = re.search(r'<textarea id="document"[^>]*>(.*?)</textarea>', page.text, re.S).group(
        1
    )  # type: ignore[union-attr]
    assert "price_amount" in yaml_text
    broken = await client.post(
        f"/rules/{rule_id}", data={"document": "name: price-ceiling\naction: maybe\n", "csrf": csrf}
    )
    assert broken.status_code == 422
    assert "was not saved" in broken.text
    cheaper = yaml_text.replace("value: 0.5", "value: 0.01").replace("&#39;", "'")
    dry = await client.post(
        f"/rules/{rule_id}", data={"document": cheaper, "csrf": csrf, "action": "dry-run"}
    )
    assert dry.status_code == 200
    assert "would <strong>deny</strong> (price_ceiling)" in dry.text
    saved = await client.post(f"/rules/{rule_id}", data={"document": cheaper, "csrf": csrf})
    assert saved.status_code == 303
    page = await client.get(saved.headers["location"])
    assert "revision 2" in page.text
    assert "value: 0.01" in page.text  # the diff
    restored = await client.post(f"/rules/{rule_id}/revisions/1/restore", data={"csrf": csrf})
    assert restored.status_code == 303
    assert "value: 0.5" in (await client.get(f"/rules/{rule_id}")).text


async def test_csv_import_and_remove(client: AsyncClient) -> None:
    await sign_in(client, BOOTSTRAP)
    csrf = csrf_of(await client.get("/lists"))
    csv = b"+46701230001,fraud ring,\n+46701230002,,2099-01-01T00:00:00Z\n"
    response = await client.post(
        "/lists/blocklist/import", data={"csrf": csrf}, files={"file": ("b.csv", csv, "text/csv")}
    )
    assert response.status_code == 303
    assert "Imported+2+entries" in response.headers["location"]
    page = (await client.get("/lists")).text
    assert "+46701230001" in page and "fraud ring" in page and "2099-01-01 00:00:00" in page
    await client.post(
        "/lists/blocklist/entries/remove", data={"csrf": csrf, "value": "+46701230001"}
    )
    assert "+46701230001" not in (await client.get("/lists")).text
    bad = await client.post(
        "/lists/blocklist/import",
        data={"csrf": csrf},
        files={"file": ("b.csv", b"nonsense\n", "text/csv")},
    )
    assert bad.status_code == 422


async def test_backtest_and_alerts_are_detected_and_shown(client: AsyncClient) -> None:
    await sign_in(client, BOOTSTRAP)
    backtest = (await client.get("/backtest")).text
    assert "are not configured" not in backtest
    assert "its console view is not wired yet" not in backtest
    assert "Start backtest" in backtest and "Recent backtests" in backtest
    assert "are not configured" not in (await client.get("/alerts")).text
    overview = (await client.get("/")).text
    assert "Alerts are not configured" not in overview
    assert 'href="/alerts">See alerts and containments' in overview


async def test_the_development_link_signs_in_once(database_url: str, tmp_path: Path) -> None:
    settings: Settings = make_settings(
        database_url, tmp_path, environment="development", console_sign_in_code="once-code"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        from httpx import ASGITransport

        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://console.test") as http:
            assert (await http.get("/sign-in/link", params={"code": "wrong"})).status_code == 401
            first = await http.get("/sign-in/link", params={"code": "once-code"})
            assert first.status_code == 303
            assert (await http.get("/")).status_code == 200
            http.cookies.clear()
            again = await http.get("/sign-in/link", params={"code": "once-code"})
            assert again.status_code == 401


async def test_every_page_answers_for_admins_and_auditors_with_security_headers(
    client: AsyncClient, sinch: SinchSender, engine: AsyncEngine
) -> None:
    """Each page, period and partial, on this backend (SQLite and PostgreSQL), for both roles."""
    event = samples.request_event(number=NUMBER)
    assert (await sinch.post(event)).status_code == 200
    denied = samples.request_event(number="+4670123")  # invalid: denied
    assert (await sinch.post(denied)).status_code == 200
    _, auditor = await stored_token(engine, "carol", "auditor")
    pages = {
        "/": "Overview",
        "/?period=7d&sort=deny": "Overview",
        "/?period=30d&sort=spend": "Overview",
        "/decisions": "Decisions",
        "/decisions?action=deny": "Decisions",
        f"/decisions/{event['id']}": "Verification",
        "/rules": "Rules",
        "/lists": "Lists",
        "/alerts": "Alerts",
        "/backtest": "Backtest",
    }
    partials = ("/overview/live?period=7d", "/decisions/rows?action=allow")
    for token in (BOOTSTRAP, auditor):
        client.cookies.clear()
        await sign_in(client, token)
        rules = (await client.get("/rules")).text
        rule = re.search(r'href="(/rules/\d+)"', rules)
        assert rule is not None
        for path, heading in {**pages, rule.group(1): "Rule"}.items():
            page = await client.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert re.search(f"<h1[^>]*>{heading}", page.text), (path, page.text[:300])
            csp = page.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp
            assert "'unsafe-inline'" not in csp
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "no-referrer"
        for path in partials:
            assert (await client.get(path)).status_code == 200, path
