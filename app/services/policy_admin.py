"""Policy changes: every one bumps the policy version and leaves rule revisions behind."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.model import Policy, Rule
from app.store import policy as store


def rule_document(rule: Rule) -> dict[str, Any]:
    """A rule as stored and exported: everything but the database id and revision."""
    return rule.model_dump(mode="json", exclude={"id", "revision"}, exclude_none=True)


async def replace_policy(
    conn: AsyncConnection,
    *,
    policy: Policy,
    now: datetime,
    actor: str | None,
    token_id: int | None = None,
) -> int:
    """Make `policy` the live policy in one transaction; return the new version.

    Rules are matched by name: unchanged ones keep their revision, changed ones get a new
    revision, missing ones are deleted (with a revision recording the deletion).
    """
    current = await store.load_policy_rows(conn)
    existing = {rule["name"]: rule for rule in current["rules"]}
    for rule in policy.rules:
        document = rule_document(rule)
        before = existing.pop(rule.name, None)
        await _put_rule(conn, before, document, now=now, actor=actor, token_id=token_id)
    for gone in existing.values():
        await remove_rule(conn, gone, now=now, actor=actor, token_id=token_id)
    await store.replace_lists(
        conn,
        named_lists=[named.model_dump(mode="python") for named in policy.lists],
        now=now,
        actor=actor,
    )
    await store.set_default_action(conn, policy.default_action)
    return await store.bump_version(conn, now=now, actor=actor)


async def _put_rule(
    conn: AsyncConnection,
    before: dict[str, Any] | None,
    document: dict[str, Any],
    *,
    now: datetime,
    actor: str | None,
    token_id: int | None,
) -> None:
    if before is None:
        rule_id = await store.insert_rule(conn, document=document, now=now, actor=actor)
        await _revision(conn, rule_id, 1, "created", None, document, now, actor, token_id)
        return
    old = {k: v for k, v in before.items() if k not in ("id", "revision")}
    if old == document:
        return
    revision = await store.next_revision(conn, before["id"])
    await store.update_rule(
        conn, rule_id=before["id"], document=document, revision=revision, now=now, actor=actor
    )
    await _revision(conn, before["id"], revision, "updated", old, document, now, actor, token_id)


async def remove_rule(
    conn: AsyncConnection,
    before: dict[str, Any],
    *,
    now: datetime,
    actor: str | None,
    token_id: int | None,
) -> None:
    old = {k: v for k, v in before.items() if k not in ("id", "revision")}
    revision = await store.next_revision(conn, before["id"])
    await store.delete_rule(conn, before["id"])
    await _revision(conn, before["id"], revision, "deleted", old, None, now, actor, token_id)


async def _revision(
    conn: AsyncConnection,
    rule_id: int,
    revision: int,
    change: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
    actor: str | None,
    token_id: int | None,
) -> None:
    name = (after or before or {}).get("name", "")
    await store.add_revision(
        conn,
        {
            "rule_id": rule_id,
            "rule_name": name,
            "revision": revision,
            "change": change,
            "actor": actor,
            "token_id": token_id,
            "changed_at": now,
            "before": before,
            "after": after,
        },
    )
