"""The one endpoint Sinch calls for every Verification event.

It is served as a plain ASGI app, ahead of FastAPI's middleware stack and router (see
`CallbackFirst`): they cost ~30 µs per request, ~3 % of a request event's CPU, and the
callback needs none of them. What it does need it does itself (its bytes: callback_io.py):
the request id, the answer to an AppError (problem+json) and to a crash (500, logged), as the
app's middleware and handlers would.
The route is also declared to FastAPI, for the OpenAPI document and for other methods.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from app.api.bodies import refuse
from app.api.callback_io import answer_messages, pick_headers, read_body, signed_delivery
from app.api.deps import Runtime
from app.api.middleware import RequestIds, with_request_id
from app.api.problems import problem_responses
from app.errors import AppError, PayloadTooLarge, crashed, problem_for
from app.logs import bind_request_id
from app.sinch.answers import RequestAnswer
from app.sinch.events import (
    VerificationRequestEvent,
    VerificationResultEvent,
    VerificationSmsDeliveredEvent,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


EVENTS = (VerificationRequestEvent, VerificationResultEvent, VerificationSmsDeliveredEvent)
SCHEMAS = (*EVENTS, RequestAnswer)
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A Sinch event, signed (`Authorization: Application <key>:<signature>`).",
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref(m.__name__) for m in EVENTS]},
            }
        },
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A VerificationRequestEvent: the decision, `allow` or `deny`, with the method's"
            " settings on allow. Any other event (result, SMS delivered, one Sinch adds"
            " later): stored, answered with an empty body."
        ),
        "content": {
            "application/json": {
                "schema": _ref("RequestAnswer"),
                "examples": {
                    "sms_allowed": {"value": {"action": "allow", "sms": {"codeType": "Numeric"}}},
                    "flashcall_allowed": {
                        "value": {"action": "allow", "flashCall": {"dialTimeout": 10}}
                    },
                    "denied": {"value": {"action": "deny"}},
                },
            }
        },
    },
    **problem_responses(400, 401, 413, 503),
}


async def sinch_event(request: Request) -> Response:
    """Receive a Sinch Verification event (request, result, SMS delivered, or other)."""
    # CallbackFirst serves every POST to this path; this is the handler FastAPI documents.
    runtime: Runtime = request.app.state.runtime
    headers = pick_headers(request.scope["headers"]).signed
    body = await read_body(request.receive, headers)
    reply = await runtime.intake.receive(await signed_delivery(runtime, body, headers))
    if reply.error is not None:
        return problem_for(reply.error, getattr(request.state, "request_id", None))
    if reply.body is None:
        return Response(status_code=reply.status)
    return JSONResponse(reply.body, status_code=reply.status)


class CallbackFirst(FastAPI):
    """FastAPI, with POSTs to `callback_path` served directly (`_serve_callback`)."""

    def __init__(self, *, callback_path: str, request_ids: RequestIds, **fastapi: Any) -> None:
        super().__init__(**fastapi)
        self.callback_path = callback_path
        self._request_ids = request_ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self.callback_path
            and scope["method"] == "POST"
        ):
            scope["app"] = self
            await self._serve_callback(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _serve_callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`sinch_event` behind RequestIdMiddleware, as plain ASGI (see callback_io.py)."""
        headers = pick_headers(scope["headers"])
        request_id = headers.request_id or self._request_ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        bind_request_id(request_id)
        try:
            body = await read_body(receive, headers.signed)
            # By key: as an attribute, the State's own lookup fails (an AttributeError, its
            # message formatted) before its __getattr__ reads the same dict.
            runtime: Runtime = self.state["runtime"]
            delivery = await signed_delivery(runtime, body, headers.signed)
            reply = await runtime.intake.receive(delivery)
        except PayloadTooLarge as error:
            await refuse(scope, receive, with_request_id(send, request_id), error)
            return
        except AppError as error:
            response = problem_for(error, request_id)
        except Exception:
            response = crashed(Request(scope, receive))
        else:
            if reply.error is None:
                start, answer = answer_messages(reply, request_id)
                await send(start)
                await send(answer)
                return
            response = problem_for(reply.error, request_id)
        await response(scope, receive, with_request_id(send, request_id))
