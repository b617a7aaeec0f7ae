"""Writing the policy: one rule with the revision that records it (`write_rule`, shared with
the rules admin), or the whole policy at once. Each change of a service bumps the version once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.alerts import REDACTED
from app.rules.model import NamedList, Policy, Rule
from app.services.tokens import Principal
from app.store import policy as store
from app.store.policy_rows import PolicyEntry, PolicyList, RuleRevision, StoredRule


@dataclass(frozen=True, slots=True)
class Author:
    """Who changes the policy, and when: stamped on the rules and on their revisions."""

    actor: str | None
    now: datetime
    token_id: int | None = None

    @classmethod
    def of(cls, by: Principal, now: datetime) -> Author:
        return cls(by.name, now, by.token_id)


def rule_document(rule: Rule) -> dict[str, Any]:
    """A rule as stored and exported: everything but the database id and revision."""
    return rule.model_dump(mode="json", exclude={"id", "revision"}, exclude_none=True)


def alerting_document(policy: Policy, *, redact: bool = False) -> dict[str, Any] | None:
    """The policy's channels, alerts and never_contain lists as stored and exported (None when
    it has none of them); `redact` hides channel secrets (for auditors)."""
    document: dict[str, Any] = {}
    if policy.channels:
        channels = [c.model_dump(mode="json", exclude_none=True) for c in policy.channels]
        if redact:
            channels = [{**c, "secret": REDACTED} if "secret" in c else c for c in channels]
        document["channels"] = channels
    if policy.alerts:
        document["alerts"] = [
            a.model_dump(mode="json", exclude_defaults=True, by_alias=True) for a in policy.alerts
        ]
    if policy.never_contain != ["allowlist"]:
        document["never_contain"] = list(policy.never_contain)
    return document or None


def policy_list(named: NamedList) -> PolicyList:
    """A validated named list as the store writes it."""
    entries = [
        PolicyEntry(value=e.value, note=e.note, expires_at=e.expires_at) for e in named.entries
    ]
    return PolicyList(
        name=named.name, kind=named.kind, description=named.description, entries=entries
    )


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
    author = Author(actor, now, token_id)
    await lock_policy(conn)
    current = await store.load_policy_rows(conn)
    existing = {rule.name: rule for rule in current.rules}
    for rule in policy.rules:
        await _sync_rule(conn, author, existing.pop(rule.name, None), rule_document(rule))
    for gone in existing.values():
        await _sync_rule(conn, author, gone, None)
    await store.replace_lists(
        conn,
        named_lists=[policy_list(named) for named in policy.lists],
        now=now,
        actor=actor,
    )
    await store.set_default_action(conn, policy.default_action)
    await store.set_alerting(conn, alerting_document(policy))
    return await store.bump_version(conn, now=now, actor=actor)


async def _sync_rule(
    conn: AsyncConnection,
    author: Author,
    before: StoredRule | None,
    document: dict[str, Any] | None,
) -> None:
    """Create, update or (no document) delete a stored rule; an unchanged one is left alone."""
    old = None if before is None else before.document
    if old == document:
        return
    change = "created" if before is None else "deleted" if document is None else "updated"
    rule_id = None if before is None else before.id
    await write_rule(conn, author, rule_id=rule_id, before=old, after=document, change=change)


async def write_rule(
    conn: AsyncConnection,
    author: Author,
    *,
    rule_id: int | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    change: str,
) -> int:
    """Store a rule's new document (`after` None deletes the rule) and the revision recording
    the change, from what to what; return the rule's id.

    No `before` inserts the rule: a new one (no `rule_id`, revision 1) or a deleted one
    coming back under its old id.
    """
    revision = 1 if rule_id is None else await store.next_revision(conn, rule_id)
    rule_id = await _write_document(conn, author, rule_id, revision, after, new=before is None)
    await store.add_revision(
        conn,
        RuleRevision(
            rule_id=rule_id,
            rule_name=(after or before or {}).get("name", ""),
            revision=revision,
            change=change,
            actor=author.actor,
            token_id=author.token_id,
            changed_at=author.now,
            before=before,
            after=after,
        ),
    )
    return rule_id


async def _write_document(
    conn: AsyncConnection,
    author: Author,
    rule_id: int | None,
    revision: int,
    document: dict[str, Any] | None,
    *,
    new: bool,
) -> int:
    """Insert, update or (no document) delete the rule's row; return its id."""
    now, actor = author.now, author.actor
    if new and document is not None:
        return await store.insert_rule(
            conn, document=document, now=now, actor=actor, rule_id=rule_id, revision=revision
        )
    if rule_id is None:
        raise ValueError("changing a stored rule takes its id")
    if document is None:
        await store.delete_rule(conn, rule_id)
    else:
        await store.update_rule(
            conn, rule_id=rule_id, document=document, revision=revision, now=now, actor=actor
        )
    return rule_id
