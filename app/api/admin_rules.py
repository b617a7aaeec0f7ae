"""/admin/rules: rules, their revisions and restores. Reads for auditors, writes for admins."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.admin_deps import ConnDep, NowDep, ReadDep, Revision, RuleId
from app.api.admin_schemas import RevisionRead, RuleCreate, RulePatch, RuleRead, RuleUpdate
from app.api.auth import AdminDep, AuditorDep
from app.api.links import links
from app.api.problems import problem_responses
from app.services.policy import rules as rules_admin

router = APIRouter(prefix="/rules")
READ_ONE = problem_responses(404, 422)
WRITE = problem_responses(400, 403, 409, 413, 422)
WRITE_ONE = problem_responses(400, 403, 404, 409, 413, 422)
_ONE = "/admin/rules/{rule_id}"
_TO_RULE = {
    "GetRule": ("get", _ONE),
    "UpdateRule": ("put", _ONE),
    "PatchRule": ("patch", _ONE),
    "DeleteRule": ("delete", _ONE),
    "ListRevisions": ("get", _ONE + "/revisions"),
    "RestoreRevision": ("post", _ONE + "/revisions/{revision}/restore"),
}
CREATED = {**WRITE, **links(201, _TO_RULE, rule_id="id", revision="revision")}
CHANGED = {**WRITE_ONE, **links(200, _TO_RULE, rule_id="id", revision="revision")}


@router.get("", response_model=list[RuleRead])
async def list_rules(_: AuditorDep, conn: ReadDep) -> list[RuleRead]:
    """List rules in evaluation order."""
    return [RuleRead.of(row) for row in await rules_admin.list_rules(conn)]


@router.post("", response_model=RuleRead, status_code=201, responses=CREATED)
async def create_rule(body: RuleCreate, by: AdminDep, conn: ConnDep, now: NowDep) -> RuleRead:
    """Create a rule (revision 1)."""
    return RuleRead.of(await rules_admin.create_rule(conn, rule=body, by=by, now=now))


@router.get("/{rule_id}", response_model=RuleRead, responses=READ_ONE)
async def get_rule(rule_id: RuleId, _: AuditorDep, conn: ReadDep) -> RuleRead:
    """Read one rule."""
    return RuleRead.of(await rules_admin.get_rule(conn, rule_id=rule_id))


@router.put("/{rule_id}", response_model=RuleRead, responses=CHANGED)
async def update_rule(
    rule_id: RuleId, body: RuleUpdate, by: AdminDep, conn: ConnDep, now: NowDep
) -> RuleRead:
    """Replace a rule's document (a new revision unless nothing changed)."""
    expected = body.revision if "revision" in body.model_fields_set else None
    row = await rules_admin.update_rule(
        conn, rule_id=rule_id, rule=body, by=by, now=now, expected_revision=expected
    )
    return RuleRead.of(row)


@router.patch("/{rule_id}", response_model=RuleRead, responses=CHANGED)
async def patch_rule(
    rule_id: RuleId, body: RulePatch, by: AdminDep, conn: ConnDep, now: NowDep
) -> RuleRead:
    """Change mode (`off` disables), priority or description."""
    row = await rules_admin.patch_rule(
        conn, rule_id=rule_id, changes=body.changes(), by=by, now=now
    )
    return RuleRead.of(row)


@router.delete("/{rule_id}", status_code=204, responses=problem_responses(403, 404, 422))
async def delete_rule(rule_id: RuleId, by: AdminDep, conn: ConnDep, now: NowDep) -> Response:
    """Delete a rule; its revisions are kept and it can be restored."""
    await rules_admin.delete_rule(conn, rule_id=rule_id, by=by, now=now)
    return Response(status_code=204)


@router.get("/{rule_id}/revisions", response_model=list[RevisionRead], responses=READ_ONE)
async def list_revisions(rule_id: RuleId, _: AuditorDep, conn: ReadDep) -> list[RevisionRead]:
    """A rule's revisions, newest first (also after it was deleted)."""
    rows = await rules_admin.list_revisions(conn, rule_id=rule_id)
    return [RevisionRead.model_validate(row) for row in rows]


@router.post(
    "/{rule_id}/revisions/{revision}/restore", response_model=RuleRead, responses=WRITE_ONE
)
async def restore_revision(
    rule_id: RuleId, revision: Revision, by: AdminDep, conn: ConnDep, now: NowDep
) -> RuleRead:
    """Make an earlier revision current again, as a new revision."""
    row = await rules_admin.restore_revision(
        conn, rule_id=rule_id, revision=revision, by=by, now=now
    )
    return RuleRead.of(row)
