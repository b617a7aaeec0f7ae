"""The one endpoint Sinch calls for every Verification event."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import DeliveryDep, RuntimeDep
from app.errors import problem_for


async def sinch_event(request: Request, delivery: DeliveryDep, runtime: RuntimeDep) -> Response:
    """Receive a Sinch Verification event (request, result, SMS delivered, or other)."""
    reply = await runtime.intake.receive(delivery)
    if reply.error is not None:
        return problem_for(reply.error, getattr(request.state, "request_id", None))
    if reply.body is None:
        return Response(status_code=reply.status)
    return JSONResponse(reply.body, status_code=reply.status)
