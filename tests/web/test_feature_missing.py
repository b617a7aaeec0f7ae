"""A console page of a feature the app does not serve (app/web/features.py) says so: what
the feature is and which API it lacks, instead of failing on tables nobody fills."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.web import pages_alerts, pages_backtest
from tests.web.conftest import BOOTSTRAP, sign_in


def _served(app: FastAPI, key: str) -> bool:
    return False  # a build without the feature's API


@pytest.mark.parametrize(
    ("path", "module", "name", "api"),
    [
        ("/alerts", pages_alerts, "Alerts and containments", "/admin/containments"),
        ("/backtest", pages_backtest, "Backtests", "/admin/backtest"),
    ],
)
async def test_a_feature_not_served_is_named_on_its_page(
    client: AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    module: object,
    name: str,
    api: str,
) -> None:
    await sign_in(client, BOOTSTRAP)
    served = await client.get(path)
    assert served.status_code == 200
    assert "are not configured" not in served.text
    monkeypatch.setattr(module, "available", _served)
    missing = await client.get(path)
    assert missing.status_code == 200
    assert f"{name} are not configured" in missing.text
    assert f"<code>{api}</code>" in missing.text
