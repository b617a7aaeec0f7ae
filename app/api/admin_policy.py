"""/admin/policy (export and import as JSON or YAML) and /admin/evaluate (a dry run)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.api.admin_deps import ConnDep, NowDep, PolicyDocument, ReadDep
from app.api.admin_schemas import EvaluateRequest, EvaluateResult, ImportResult
from app.api.auth import AdminDep, AuditorDep
from app.api.deps import RuntimeDep
from app.api.problems import problem_responses
from app.services.policy import io as policy_io
from app.services.policy.evaluate import evaluate_event

router = APIRouter()
POLICY_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Policy"}},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/Policy"}},
        }
    }
}
POLICY_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The policy as JSON, or as YAML with `format=yaml`.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Policy"}},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/Policy"}},
        },
    }
}


@router.get("/policy", responses={**problem_responses(422), **POLICY_ANSWER})
async def export_policy(
    by: AuditorDep, conn: ReadDep, runtime: RuntimeDep, format: Literal["json", "yaml"] = "json"
) -> Response:
    """Export the whole policy (rules, lists, default action, channels and alerts) as JSON or
    YAML; channel secrets are shown to admins only."""
    document = await policy_io.export_policy(
        conn, default_action=runtime.settings.default_action, redact=not by.is_admin
    )
    if format == "yaml":
        return Response(policy_io.dump_document(document, "yaml"), media_type="application/yaml")
    return JSONResponse(document)


@router.put(
    "/policy",
    response_model=ImportResult,
    openapi_extra=POLICY_BODY,
    responses=problem_responses(400, 403, 409, 413, 415, 422),
)
async def import_policy(
    document: PolicyDocument,
    by: AdminDep,
    conn: ConnDep,
    now: NowDep,
    runtime: RuntimeDep,
    dry_run: bool = False,
) -> ImportResult:
    """Replace the whole policy atomically (JSON or YAML body); an invalid one changes nothing."""
    report = await policy_io.import_policy(
        conn,
        document=document,
        by=by,
        now=now,
        default_action=runtime.settings.default_action,
        dry_run=dry_run,
    )
    return ImportResult.of(report)


@router.post("/evaluate", response_model=EvaluateResult, responses=problem_responses(400, 413, 422))
async def evaluate(
    body: EvaluateRequest, _: AuditorDep, conn: ConnDep, now: NowDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Decide a request event against the live or a candidate policy; counts and stores nothing."""
    return await evaluate_event(
        conn,
        event=body.event,
        candidate=body.policy,
        application=body.application,
        now=body.at or now,
        policies=runtime.policies,
        aggregator=runtime.aggregator,
        settings=runtime.settings,
    )
