"""Rule administration: create, update, change mode or priority, delete, list and restore revisions.

Every change locks the policy, leaves a revision naming its author and bumps the version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Conflict, NotFound, Unprocessable, validation_errors
from app.rules.model import Condition, InList, Rule, children
from app.services.policy.admin import Author, lock_policy, rule_document, write_rule
from app.services.tokens import Principal
from app.store import lists as list_store
from app.store import policy as store
from app.store.policy_rows import RuleRevision, StoredRule


async def list_rules(conn: AsyncConnection) -> list[StoredRule]:
    return await store.rule_rows(conn)


async def get_rule(conn: AsyncConnection, *, rule_id: int) -> StoredRule:
    return await _existing(conn, rule_id)


async def create_rule(
    conn: AsyncConnection, *, rule: Rule, by: Principal, now: datetime
) -> StoredRule:
    await lock_policy(conn)
    await _check(conn, rule, rule_id=None)
    author = Author.of(by, now)
    rule_id = await write_rule(
        conn, author, rule_id=None, before=None, after=rule_document(rule), change="created"
    )
    return await _done(conn, rule_id, author)


async def update_rule(
    conn: AsyncConnection,
    *,
    rule_id: int,
    rule: Rule,
    by: Principal,
    now: datetime,
    expected_revision: int | None = None,
) -> StoredRule:
    """Replace a rule's document; `expected_revision` guards against lost updates."""
    await lock_policy(conn)
    row = await _existing(conn, rule_id)
    if expected_revision is not None and expected_revision != row.revision:
        raise Conflict(
            f"rule {rule_id} is at revision {row.revision}, not {expected_revision}",
            code="revision_mismatch",
        )
    await _check(conn, rule, rule_id=rule_id)
    return await _change(conn, row, rule_document(rule), "updated", Author.of(by, now))


async def patch_rule(
    conn: AsyncConnection,
    *,
    rule_id: int,
    changes: Mapping[str, Any],
    by: Principal,
    now: datetime,
) -> StoredRule:
    """Change some top-level fields (mode, priority, description); mode `off` disables."""
    await lock_policy(conn)
    row = await _existing(conn, rule_id)
    rule = validated_rule({**row.document, **changes})
    return await _change(conn, row, rule_document(rule), "updated", Author.of(by, now))


async def delete_rule(conn: AsyncConnection, *, rule_id: int, by: Principal, now: datetime) -> None:
    await lock_policy(conn)
    row = await _existing(conn, rule_id)
    await write_rule(
        conn,
        Author.of(by, now),
        rule_id=rule_id,
        before=row.document,
        after=None,
        change="deleted",
    )
    await store.bump_version(conn, now=now, actor=by.name)


async def list_revisions(conn: AsyncConnection, *, rule_id: int) -> list[RuleRevision]:
    rows = await store.revision_rows(conn, rule_id)
    if not rows:
        raise NotFound(f"no rule {rule_id} and no history of one", code="rule_not_found")
    return rows


async def restore_revision(
    conn: AsyncConnection, *, rule_id: int, revision: int, by: Principal, now: datetime
) -> StoredRule:
    """Make an earlier revision current again, as a new revision; revives a deleted rule."""
    await lock_policy(conn)
    old = await store.revision_row(conn, rule_id, revision)
    if old is None:
        raise NotFound(f"rule {rule_id} has no revision {revision}", code="revision_not_found")
    if old.after is None:
        raise Unprocessable(
            f"revision {revision} records the rule's deletion; restore an earlier one",
            code="revision_is_deletion",
        )
    rule = validated_rule(old.after)
    await _check(conn, rule, rule_id=rule_id)
    document, author = rule_document(rule), Author.of(by, now)
    row = await store.rule_row(conn, rule_id)
    if row is not None:
        return await _change(conn, row, document, "restored", author)
    await write_rule(conn, author, rule_id=rule_id, before=None, after=document, change="restored")
    return await _done(conn, rule_id, author)


def validated_rule(document: Mapping[str, Any]) -> Rule:
    try:
        return Rule.model_validate(document)
    except ValidationError as exc:
        raise Unprocessable.listing(validation_errors(list(exc.errors()))) from None


async def _existing(conn: AsyncConnection, rule_id: int) -> StoredRule:
    row = await store.rule_row(conn, rule_id)
    if row is None:
        raise NotFound(f"no rule {rule_id}", code="rule_not_found")
    return row


async def _check(conn: AsyncConnection, rule: Rule, *, rule_id: int | None) -> None:
    """The rule's name is free and every list it refers to exists."""
    holder = await store.rule_id_by_name(conn, rule.name)
    if holder is not None and holder != rule_id:
        raise Conflict(
            f"rule {holder} is already named {rule.name!r}",
            code="rule_name_taken",
            errors=[{"loc": "name", "msg": f"a rule named {rule.name!r} exists (id {holder})"}],
        )
    errors = [
        {"loc": loc, "msg": f"unknown list {name!r}"}
        for loc, name in list_references(rule.when, "when")
        if await list_store.list_row(conn, name) is None
    ]
    if errors:
        raise Unprocessable.listing(errors)


def list_references(condition: Condition, loc: str) -> Iterator[tuple[str, str]]:
    """(location, list name) of every `in_list` in a condition tree."""
    if isinstance(condition, InList):
        yield f"{loc}.in_list", condition.in_list
    for place, child in children(condition):
        yield from list_references(child, f"{loc}.{place}")


async def _change(
    conn: AsyncConnection,
    row: StoredRule,
    document: dict[str, Any],
    change: str,
    author: Author,
) -> StoredRule:
    """Store a new document for an existing rule; an identical one changes nothing."""
    if document == row.document:
        return row
    rule_id = await write_rule(
        conn, author, rule_id=row.id, before=row.document, after=document, change=change
    )
    return await _done(conn, rule_id, author)


async def _done(conn: AsyncConnection, rule_id: int, author: Author) -> StoredRule:
    await store.bump_version(conn, now=author.now, actor=author.actor)
    return await get_rule(conn, rule_id=rule_id)
