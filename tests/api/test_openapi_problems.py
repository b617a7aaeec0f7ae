"""/openapi.json documents every answer: each error a route can give is a problem document.

The walk looks at each route's dependencies (authentication, admin role), parameters and
body to know which statuses it can answer, so a route added later without
`responses=problem_responses(...)` fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.api.auth import AdminDep, current_principal, require_admin
from app.errors import PROBLEM_JSON
from app.main import create_app
from tests.conftest import make_settings

PROBES = {("get", "/readyz")}  # a probe's 503 is its own JSON, for load balancers


@pytest.fixture(scope="module")
def app_and_document(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("openapi")
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp / 'x.db'}", tmp))
    return app, app.openapi()


def _calls(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _expected(route: Any) -> set[str]:
    """The error statuses a route can answer, from what it depends on and takes."""
    calls = _calls(route.dependant)
    dependant = route.dependant
    statuses: set[str] = set()
    if current_principal in calls:
        statuses.add("401")
    if require_admin in calls:
        statuses.add("403")
    if dependant.path_params or dependant.query_params or route.body_field is not None:
        statuses.add("422")
    if route.body_field is not None or (
        route.openapi_extra and "requestBody" in route.openapi_extra
    ):
        statuses |= {"400", "413"}  # not JSON (or not UTF-8); too large
    if any(
        p.name in ("rule_id", "name", "verification_id", "reference", "endpoint")
        for p in dependant.path_params
    ):
        statuses.add("404")
    return statuses


def _routes(app: Any) -> list[Any]:
    """Every documented API route, those of included routers too (FastAPI 0.165 keeps an
    included router as one entry of `app.routes`; `iter_route_contexts` walks into them)."""
    contexts = routing.iter_route_contexts(app.routes)
    found = [c for c in contexts if isinstance(c.original_route, APIRoute)]
    assert len(found) > 30, "the walk found too few routes"
    return [c for c in found if c.include_in_schema]


def test_every_error_answer_is_a_problem_document(
    app_and_document: tuple[Any, dict[str, Any]],
) -> None:
    _, document = app_and_document
    wrong = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) < 400 or (method, path) in PROBES:
                    continue
                content = answer.get("content", {})
                schema = content.get(PROBLEM_JSON, {}).get("schema")
                if list(content) != [PROBLEM_JSON] or schema != {
                    "$ref": "#/components/schemas/Problem"
                }:
                    wrong.append(f"{method.upper()} {path} {status}: {sorted(content)}")
                elif content[PROBLEM_JSON]["example"]["status"] != int(status):
                    wrong.append(f"{method.upper()} {path} {status}: example of another status")
    assert wrong == []


def test_every_operation_documents_the_errors_it_can_answer(
    app_and_document: tuple[Any, dict[str, Any]],
) -> None:
    app, document = app_and_document
    missing = []
    for route in _routes(app):
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            documented = set(operation["responses"])
            if lacking := _expected(route) - documented:
                missing.append(f"{method} {route.path_format}: {sorted(lacking)}")
            if not any(s.startswith("2") for s in documented):
                missing.append(f"{method} {route.path_format}: no success answer")
    assert missing == []


def test_a_route_without_its_problem_responses_is_caught(tmp_path: Path) -> None:
    """The walk can fail: an authenticated route with a path id and no `responses=`."""
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path))
    app.add_api_route("/admin/things/{name}", _undocumented, methods=["DELETE"])
    route = next(r for r in _routes(app) if r.path_format == "/admin/things/{name}")
    documented = set(app.openapi()["paths"]["/admin/things/{name}"]["delete"]["responses"])
    assert _expected(route) - documented == {"401", "403", "404"}


async def _undocumented(name: str, _: AdminDep) -> None:
    """A route someone forgot to document."""


def test_the_problem_schema_has_a_stable_code(app_and_document: tuple[Any, dict[str, Any]]) -> None:
    _, document = app_and_document
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_callback_documents_its_answers_per_event(
    app_and_document: tuple[Any, dict[str, Any]],
) -> None:
    app, document = app_and_document
    settings_path = next(r.path_format for r in _routes(app) if "sinch" in (r.tags or []))
    operation = document["paths"][settings_path]["post"]
    assert {"200", "400", "401", "413", "503"} <= set(operation["responses"])
    ok = operation["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/RequestAnswer"}
    assert {e["value"]["action"] for e in ok["examples"].values()} == {"allow", "deny"}
    events = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    names = {e["$ref"].rsplit("/", 1)[1] for e in events}
    assert names == {
        "VerificationRequestEvent",
        "VerificationResultEvent",
        "VerificationSmsDeliveredEvent",
    }
    assert names <= set(document["components"]["schemas"])
