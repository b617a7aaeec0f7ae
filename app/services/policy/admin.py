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


def stored_document(loaded: dict[str, Any]) -> dict[str, Any]:
    """A rule from `load_policy_rows` without its id and revision: as `rule_document` gives."""
    return {k: v for k, v in loaded.items() if k not in ("id", "revision")}


async def lock_policy(conn: AsyncConnection) -> None:
    """Serialise policy changes (PostgreSQL row lock on the policy state until commit)."""
    await store.policy_version(conn, for_update=True)


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
    await lock_policy(conn)
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
        await record_revision(
            conn,
            rule_id=rule_id,
            revision=1,
            change="created",
            before=None,
            after=document,
            now=now,
            actor=actor,
            token_id=token_id,
        )
        return
    old = stored_document(before)
    if old == document:
        return
    revision = await store.next_revision(conn, before["id"])
    await store.update_rule(
        conn, rule_id=before["id"], document=document, revision=revision, now=now, actor=actor
    )
    await record_revision(
        conn,
        rule_id=before["id"],
        revision=revision,
        change="updated",
        before=old,
        after=document,
        now=now,
        actor=actor,
        token_id=token_id,
    )


async def remove_rule(
    conn: AsyncConnection,
    before: dict[str, Any],
    *,
    now: datetime,
    actor: str | None,
    token_id: int | None,
) -> None:
    old = stored_document(before)
    revision = await store.next_revision(conn, before["id"])
    await store.delete_rule(conn, before["id"])
    await record_revision(
        conn,
        rule_id=before["id"],
        revision=revision,
        change="deleted",
        before=old,
        after=None,
        now=now,
        actor=actor,
        token_id=token_id,
    )


async def record_revision(
    conn: AsyncConnection,
    *,
    rule_id: int,
    revision: int,
    change: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
    actor: str | None,
    token_id: int | None,
) -> None:
    """Append an immutable revision: who changed the rule, when, and from what to what."""
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
