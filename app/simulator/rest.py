"""A local Sinch Verification REST API (start, report, status) that calls VerifyGuard's
callback with signed events, so an application can be developed offline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.simulator.callback import CallbackTarget
from app.simulator.lifecycle import ApiError, Clock, Emulator, Verification
from app.simulator.wire import (
    FlashCallStarted,
    Link,
    ReportedDoc,
    SecretDoc,
    SmsStarted,
    StartedDoc,
    StatusDoc,
)

BASE = "/verification/v1"
log = logging.getLogger("uvicorn.error")
router = APIRouter()


def create_emulator(
    target: CallbackTarget, *, client: httpx.AsyncClient | None = None, clock: Clock | None = None
) -> FastAPI:
    """The emulator app; `client` reaches VerifyGuard (default: a plain HTTP client)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = client or httpx.AsyncClient(timeout=10)
        app.state.emulator = Emulator(target=target, client=http, clock=clock)
        try:
            yield
        finally:
            if client is None:
                await http.aclose()

    app = FastAPI(title="Sinch Verification API (local emulator)", lifespan=lifespan)
    app.include_router(router)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    return app


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, 40001, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, 40001, "the body must be a JSON object")
    return body


@router.post(f"{BASE}/verifications")
async def start(request: Request) -> StartedDoc:
    """Start a verification; the request event goes to VerifyGuard before this returns."""
    verification = await _emulator(request).start(await _body(request))
    if verification.secret:  # what the phone would show; there is no phone here
        log.info(
            "verification %s %s: %s", verification.id, verification.method, verification.secret
        )
    return _started(verification, str(request.base_url).rstrip("/"))


@router.put(f"{BASE}/verifications/id/{{ident}}")
async def report_by_id(ident: str, request: Request) -> ReportedDoc:
    """Report the code (or the flash call's CLI) the user received."""
    emulator = _emulator(request)
    verification = await emulator.report(emulator.get(ident), await _body(request))
    return _reported(verification)


@router.put(f"{BASE}/verifications/number/{{endpoint}}")
async def report_by_number(endpoint: str, request: Request) -> ReportedDoc:
    """Report for the newest verification of a number."""
    emulator = _emulator(request)
    verification = await emulator.report(emulator.latest(number=endpoint), await _body(request))
    return _reported(verification)


@router.get(f"{BASE}/verifications/id/{{ident}}")
async def status_by_id(ident: str, request: Request) -> StatusDoc:
    return _emulator(request).get(ident).status_document()


@router.get(f"{BASE}/verifications/{{method}}/number/{{endpoint}}")
async def status_by_number(method: str, endpoint: str, request: Request) -> StatusDoc:
    return _emulator(request).latest(number=endpoint, method=method).status_document()


@router.get(f"{BASE}/verifications/reference/{{reference}}")
async def status_by_reference(reference: str, request: Request) -> StatusDoc:
    return _emulator(request).latest(reference=reference).status_document()


@router.get("/emulator/verifications/{ident}")
async def secret(ident: str, request: Request) -> SecretDoc:
    """Emulator only: the code (or CLI) a real phone would have received."""
    verification = _emulator(request).get(ident)
    if verification.method == "flashcall":
        return {"id": verification.id, "method": verification.method, "cli": verification.secret}
    return {"id": verification.id, "method": verification.method, "code": verification.secret}


def _started(verification: Verification, base_url: str) -> StartedDoc:
    href = f"{base_url}{BASE}/verifications/id/{verification.id}"
    links: list[Link] = [
        {"rel": "status", "href": href, "method": "GET"},
        {"rel": "report", "href": href, "method": "PUT"},
    ]
    ident, method = verification.id, verification.method
    if method == "sms":
        remaining = int((verification.expires_at - verification.created_at).total_seconds())
        sms: SmsStarted = {"template": "Your code is {{CODE}}", "interceptionTimeout": remaining}
        return {"id": ident, "method": method, "sms": sms, "_links": links}
    if method == "flashcall":
        return {
            "id": ident,
            "method": method,
            "flashCall": _flash_call(verification),
            "_links": links,
        }
    if method == "callout":
        return {"id": ident, "method": method, "callout": {}, "_links": links}
    if method == "whatsapp":
        return {"id": ident, "method": method, "whatsapp": {}, "_links": links}
    return {"id": ident, "method": method, "_links": links}


def _flash_call(verification: Verification) -> FlashCallStarted:
    cli_filter = verification.secret[:-4] + "...." if verification.secret else ""
    return {"cliFilter": f"(.*){cli_filter[1:]}", "interceptionTimeout": 45, "reportTimeout": 75}


def _reported(verification: Verification) -> ReportedDoc:
    document: ReportedDoc = {
        "id": verification.id,
        "method": verification.method,
        "status": verification.status,
    }
    if verification.reason is not None:
        document["reason"] = verification.reason
    return document


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    body = {"errorCode": exc.code, "message": exc.message, "reference": _reference(request)}
    return JSONResponse(body, status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    body = {"errorCode": exc.status_code * 100, "message": str(exc.detail)}
    body["reference"] = _reference(request)
    return JSONResponse(body, status_code=exc.status_code)


def _reference(request: Request) -> str:
    return request.headers.get("x-request-id", "local-emulator")
