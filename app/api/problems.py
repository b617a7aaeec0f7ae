"""The problem document (RFC 9457) in the OpenAPI document: its schema, and `problem_responses`,
the `responses=` of a route that can answer with it, e.g. `responses=problem_responses(401, 404)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from app.errors import PROBLEM_JSON

SCHEMA_REF = "#/components/schemas/Problem"


class ProblemError(BaseModel):
    """One invalid input: where (a dotted path) and what is wrong."""

    loc: str
    msg: str


class Problem(BaseModel):
    """Every error VerifyGuard answers: `application/problem+json`; `code` is stable."""

    type: str = Field(examples=["https://verifyguard.dev/problems/not_found"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(description="Stable, machine-readable; switch on this, not on `detail`.")
    request_id: str | None = Field(None, description="Also in the X-Request-Id header.")
    errors: list[ProblemError] | None = Field(None, description="Invalid inputs (422, 400).")


# What each status means, and an example code and detail for it.
_STATUSES: dict[int, tuple[str, str, str, str]] = {
    400: ("Malformed input", "malformed_body", "Bad request", "the body is not UTF-8 text"),
    401: ("No valid credentials", "missing_token", "Unauthorized", "A bearer token is required."),
    403: ("The credentials do not allow this", "admin_required", "Forbidden", "needs an admin"),
    404: ("Nothing has this id or name", "not_found", "Not found", "no rule 42"),
    409: ("Conflicts with the current state", "conflict", "Conflict", "name already taken"),
    413: (
        "The body is too large",
        "payload_too_large",
        "Payload too large",
        "at most 8388608 bytes",
    ),
    415: (
        "Unsupported Content-Type",
        "unsupported_media_type",
        "Unsupported media type",
        "send JSON or YAML",
    ),
    422: (
        "Invalid input; `errors` lists each",
        "validation_error",
        "Validation failed",
        "see errors",
    ),
    429: ("Too many requests", "rate_limited", "Too many requests", "retry later"),
    503: ("Cannot answer now; retry", "unavailable", "Service unavailable", "retry later"),
}


def problem_example(status: int, *, code: str | None = None, detail: str | None = None) -> Any:
    _, example_code, title, example_detail = _STATUSES[status]
    code = code or example_code
    body: dict[str, Any] = {
        "type": f"https://verifyguard.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail or example_detail,
        "code": code,
        "request_id": "5f3a9c1e-1b",
    }
    if status == 422:
        body["errors"] = [{"loc": "priority", "msg": "Input should be a valid integer"}]
        body["detail"] = "priority: Input should be a valid integer"
    return body


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries for each status: a problem+json document, with an example."""
    return {status: _problem_response(status) for status in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    meaning = _STATUSES[status][0]
    content = {"schema": {"$ref": SCHEMA_REF}, "example": problem_example(status)}
    return {"description": meaning, "content": {PROBLEM_JSON: content}}


def install_openapi(app: FastAPI, *, models: Sequence[type[BaseModel]] = ()) -> None:
    """The app's OpenAPI document, with the Problem schema the responses refer to and the
    `models` that routes refer to by hand (`#/components/schemas/<name>`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            every: list[type[BaseModel]] = [Problem, *models]
            for model in every:
                _add_schema(schemas, model)
            _replace_default_422(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas[model.__name__] = schema


def _replace_default_422(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 on every route with parameters, as its own JSON shape; ours
    is the problem document."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None and PROBLEM_JSON not in answer.get("content", {}):
                operation["responses"]["422"] = _problem_response(422)
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
