"""Rules: each with mode, priority, 24 h hits, would-deny and money saved; the mode switch;
a rule's YAML editor with validation and a dry run; its revisions, diffs and restores."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app.api.admin_deps import ConnDep, NowDep
from app.api.deps import RuntimeDep
from app.rules.model import Mode
from app.services.audit.queries import AuditFilter
from app.services.audit.stats import stats
from app.services.policy import rules as rules_admin
from app.services.policy.evaluate import evaluate_event
from app.web import rule_edit
from app.web.auth import AdminChangeDep, ConsoleDep, User, UserDep
from app.web.common import ConsoleRoute, back, reading, render
from app.web.console import Console

router = APIRouter(prefix="/rules", route_class=ConsoleRoute, include_in_schema=False)
MODES = ("enforce", "shadow", "off")


@router.get("", response_class=HTMLResponse)
async def rules_page(
    request: Request, user: UserDep, console: ConsoleDep, conn: ConnDep
) -> Response:
    ctx = reading(request, console, user)
    window = AuditFilter(since=ctx.at - timedelta(hours=24), until=ctx.at)
    doc = await stats(
        conn=conn, ctx=ctx, filters=window, bucket=None, group_by="rule", range_digits=6, top=1
    )
    decided = {row["group"]: row for row in doc["rows"]}
    shadow = {row["rule"]: row for row in doc["shadowRules"]}
    rows = [
        {"rule": rule, "decided": decided.get(rule.name), "shadow": shadow.get(rule.name)}
        for rule in await rules_admin.list_rules(conn)
    ]
    return render(request, console, user, "rules.html", page="Rules", rows=rows, modes=MODES)


@router.post("/{rule_id}/mode")
async def change_mode(
    rule_id: int, user: AdminChangeDep, conn: ConnDep, now: NowDep, mode: Annotated[Mode, Form()]
) -> Response:
    row = await rules_admin.patch_rule(
        conn, rule_id=rule_id, changes={"mode": mode}, by=user.principal, now=now
    )
    return back("/rules", notice=f"{row.name} is now in mode {row.mode} (revision {row.revision}).")


@router.get("/{rule_id}", response_class=HTMLResponse)
async def rule_page(
    rule_id: int, request: Request, user: UserDep, console: ConsoleDep, conn: ConnDep
) -> Response:
    row = await rules_admin.get_rule(conn, rule_id=rule_id)
    text = rule_edit.as_yaml(row.document)
    return await _editor(request, console, user, conn, rule_id, text=text)


@router.post("/{rule_id}", response_class=HTMLResponse)
async def save_rule(
    rule_id: int,
    request: Request,
    user: AdminChangeDep,
    console: ConsoleDep,
    conn: ConnDep,
    now: NowDep,
    runtime: RuntimeDep,
    document: Annotated[str, Form()],
    event: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "save",
) -> Response:
    rule, errors = rule_edit.parse_rule(document)
    if rule is None or action != "save":
        result = None
        if rule is not None:
            result, errors = await _dry_run(conn, runtime, rule_id, rule, event, now)
        return await _editor(
            request,
            console,
            user,
            conn,
            rule_id,
            text=document,
            event=event,
            errors=errors,
            result=result,
        )
    row = await rules_admin.update_rule(
        conn, rule_id=rule_id, rule=rule, by=user.principal, now=now
    )
    return back(f"/rules/{rule_id}", notice=f"Saved {row.name} as revision {row.revision}.")


@router.post("/{rule_id}/revisions/{revision}/restore")
async def restore(
    rule_id: int, revision: int, user: AdminChangeDep, conn: ConnDep, now: NowDep
) -> Response:
    row = await rules_admin.restore_revision(
        conn, rule_id=rule_id, revision=revision, by=user.principal, now=now
    )
    notice = f"Restored revision {revision} of {row.name} as revision {row.revision}."
    return back(f"/rules/{rule_id}", notice=notice)


async def _dry_run(
    conn: ConnDep, runtime: RuntimeDep, rule_id: int, rule: Any, event_text: str, now: Any
) -> tuple[dict[str, Any] | None, list[str]]:
    event, errors = rule_edit.parse_event(event_text or rule_edit.sample_event_text())
    if event is None:
        return None, errors
    current = await rules_admin.get_rule(conn, rule_id=rule_id)
    live = (await runtime.policies.current(conn)).policy  # compiled already: no load
    try:
        candidate = rule_edit.with_rule(live, rule, replacing=current.name)
    except ValidationError as exc:
        return None, [f"the policy with this rule: {e['msg']}" for e in exc.errors()]
    result = await evaluate_event(
        conn,
        event=event,
        candidate=candidate,
        application=None,
        now=now,
        policies=runtime.policies,
        aggregator=runtime.aggregator,
        settings=runtime.settings,
    )
    return result, []


async def _editor(
    request: Request,
    console: Console,
    user: User,
    conn: ConnDep,
    rule_id: int,
    *,
    text: str,
    event: str = "",
    errors: list[str] | None = None,
    result: dict[str, Any] | None = None,
) -> Response:
    row = await rules_admin.get_rule(conn, rule_id=rule_id)
    revisions = [
        (rev, rule_edit.revision_diff(rev))
        for rev in await rules_admin.list_revisions(conn, rule_id=rule_id)
    ]
    return render(
        request,
        console,
        user,
        "rule.html",
        page="Rules",
        rule=row,
        text=text,
        event=event or rule_edit.sample_event_text(),
        errors=errors or [],
        result=result,
        revisions=revisions,
        status_code=422 if errors else 200,
    )
