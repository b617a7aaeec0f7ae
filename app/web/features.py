"""Optional features the console shows when the app serves them: alerts and containments,
backtests. Each is detected from the app's own routes (the API that feature adds), so the
console needs no change to notice it; wiring its view is then a page module of its own."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    api: str  # the path prefix its API is served under
    view: bool  # whether the console has a page for it yet


FEATURES = {
    "alerts": Feature("Alerts and containments", "/admin/containments", view=False),
    "backtest": Feature("Backtests", "/admin/backtest", view=False),
}


def available(app: FastAPI, key: str) -> bool:
    prefix = FEATURES[key].api
    return any(isinstance(r, APIRoute) and r.path.startswith(prefix) for r in app.routes)
