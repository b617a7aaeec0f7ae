"""AppError hierarchy and the RFC 9457 problem+json rendering shared by every endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.rules.conditions import field_path

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger()


class AppError(Exception):
    """An expected failure with a stable machine-readable `code`."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers
        if code is not None:
            self.code = code


class BadRequest(AppError):
    pass


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(AppError):
    status, code, title = 422, "validation_error", "Validation failed"

    @classmethod
    def listing(cls, errors: list[dict[str, Any]], *, root: str = "") -> Unprocessable:
        """A 422 carrying `errors` ([{loc, msg}]), its detail naming each one on one line."""
        return cls(error_detail(errors, root=root), errors=errors)


def error_detail(errors: Sequence[Mapping[str, Any]], *, root: str = "") -> str:
    """`loc: msg; loc: msg` (an empty loc shows as `root`)."""
    return "; ".join(f"{e['loc'] or root}: {e['msg']}" for e in errors)


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class ServiceUnavailable(AppError):
    status, code, title = 503, "unavailable", "Service unavailable"


def problem(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request_id: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://verifyguard.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request_id:
        body["request_id"] = request_id
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_for(error: AppError, request_id: str | None = None) -> JSONResponse:
    return problem(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        request_id=request_id,
        errors=error.errors,
        headers=error.headers,
    )


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as [{loc, msg}] with the location joined into a readable path."""
    out = []
    for err in raw:
        path = field_path(tuple(err.get("loc", ())))
        loc = [str(part) for part in path if part not in ("body",)]
        out.append({"loc": ".".join(loc), "msg": err.get("msg", "invalid")})
    return out


def crashed(request: Request) -> JSONResponse:
    """The answer to an unexpected exception (called from its handler): logged, 500."""
    log.exception("request.crashed", path=request.url.path)
    return problem(
        status=500,
        code="internal_error",
        title="Internal error",
        detail="An unexpected error occurred; it has been logged.",
        request_id=_request_id(request),
    )


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


# FastAPI's own 400 is a body it could not parse (not JSON, not UTF-8).
_HTTP_CODES = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    async def on_app_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return problem_for(exc, _request_id(request))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(list(exc.errors()))
        return problem_for(Unprocessable.listing(errors, root="body"), _request_id(request))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem(
            status=exc.status_code,
            code=code,
            title=str(exc.detail) if exc.status_code != 404 else "Not found",
            detail=str(exc.detail),
            request_id=_request_id(request),
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        return crashed(request)

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
