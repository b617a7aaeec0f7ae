"""FastAPI dependencies: the runtime built by create_app, sessions, the verified callback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, NoReturn

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.errors import PayloadTooLarge, Unauthorized
from app.metrics import Metrics
from app.services.aggregates import Aggregator, Counting
from app.services.alerts.jobs import AlertJobs
from app.services.backtest.launcher import Backtests
from app.services.baselines import BaselineCache
from app.services.intake.dispatch import Delivery, Intake
from app.services.policy.cache import PolicyCache
from app.services.resilience import Outage
from app.settings import Settings
from app.sinch.signature import SignatureError, SignatureVerifier, SignedRequest
from app.store.held import HeldConnections

MAX_CALLBACK_BYTES = 256 * 1024  # Sinch's events are a few hundred bytes
log = structlog.get_logger()


@dataclass
class Runtime:
    """Everything a request needs that lives as long as the process."""

    settings: Settings
    engine: AsyncEngine
    counter_engine: AsyncEngine | None
    held: HeldConnections | None
    counting: Counting
    sessions: async_sessionmaker[AsyncSession]
    verifier: SignatureVerifier
    policies: PolicyCache
    aggregator: Aggregator
    intake: Intake
    outage: Outage
    metrics: Metrics
    alerts: AlertJobs
    baselines: BaselineCache
    backtests: Backtests


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs plain `def` dependencies in a thread pool.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response is sent."""
    async with runtime.sessions() as session, session.begin():
        yield session


# scope="function": the transaction ends (commits) when the handler returns, before the
# response is sent; the default scope would commit only after the response went out.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def signed_delivery(request: Request, runtime: Runtime) -> Delivery:
    """The raw callback body, its signature checked against the configured Sinch apps."""
    body = await _body(request, MAX_CALLBACK_BYTES)
    now = datetime.now(UTC)
    signed = SignedRequest(
        method=request.method,
        path=runtime.settings.signed_path,
        body=body,
        headers=request.headers,
    )
    content_type = request.headers.get("content-type")
    try:
        app_key = runtime.verifier.verify(signed, now=now)
    except SignatureError as exc:
        rejected = Delivery(body, content_type, exc.app_key, now, signature=exc.failure.value)
        await runtime.intake.reject(rejected)
        raise Unauthorized(
            _REJECTION_DETAIL[exc.failure.value],
            code=exc.failure.value,
            headers={"WWW-Authenticate": "Application"},
        ) from None
    return Delivery(body, content_type, app_key, now)


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused (413) beyond `limit` bytes: by its Content-Length, or as it streams."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        _too_large(int(declared), limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            _too_large(received, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> NoReturn:
    log.warning("callback.too_large", bytes=size, limit=limit)
    raise PayloadTooLarge(f"A callback body is at most {limit} bytes; this one has {size}+.")


_REJECTION_DETAIL = {
    "missing_authorization": "The Authorization header is missing.",
    "malformed_authorization": "The Authorization header is not 'Application <key>:<signature>'.",
    "unknown_application": "The application key is not configured.",
    "missing_timestamp": "The x-timestamp header is missing.",
    "malformed_timestamp": "The x-timestamp header is not an ISO-8601 timestamp.",
    "stale_timestamp": "The x-timestamp header is outside the accepted window.",
    "bad_signature": "The signature does not match the request.",
}
