"""Optional features the console shows when the app serves them: alerts and containments,
backtests. Each is detected from the app's own routes (the API that feature adds), so the
console needs no change to notice it; wiring its view is then a page module of its own."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, routing


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    api: str  # the path prefix its API is served under
    view: bool  # whether the console has a page for it yet


FEATURES = {
    "alerts": Feature("Alerts and containments", "/admin/containments", view=True),
    "backtest": Feature("Backtests", "/admin/backtest", view=True),
}


def available(app: FastAPI, key: str) -> bool:
    prefix = FEATURES[key].api
    return any(path.startswith(prefix) for path in _paths(app))


def _paths(app: FastAPI) -> list[str]:
    """Every route's path. FastAPI 0.165 keeps an included router as one entry of
    `app.routes`; its `iter_route_contexts` walks into them (older versions are flat)."""
    walk = getattr(routing, "iter_route_contexts", None)
    routes = walk(app.routes) if walk is not None else app.routes
    return [path for route in routes if isinstance(path := getattr(route, "path", None), str)]
