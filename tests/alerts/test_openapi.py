"""The alert endpoints declare every error they answer as application/problem+json."""

from __future__ import annotations

from app.main import create_app
from app.settings import Settings

ROUTES = {
    ("/admin/containments", "get"): {"401", "422"},
    ("/admin/containments/{containment_id}/approve", "post"): {"401", "403", "404", "409", "422"},
    ("/admin/containments/{containment_id}/lift", "post"): {"401", "403", "404", "409", "422"},
    ("/admin/containments/{containment_id}/extend", "post"): {
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "422",
    },
    ("/admin/alerts/events", "get"): {"401", "422"},
    ("/admin/alerts/notifications", "get"): {"401", "422"},
}


def test_errors_are_problem_json() -> None:
    document = create_app(Settings(_env_file=None, environment="test")).openapi()  # type: ignore[call-arg]
    for (path, method), statuses in ROUTES.items():
        responses = document["paths"][path][method]["responses"]
        assert set(responses) == {"200", *statuses}, path
        for status in statuses:
            assert list(responses[status]["content"]) == ["application/problem+json"], (
                path,
                status,
            )
