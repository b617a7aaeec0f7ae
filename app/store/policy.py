"""The live policy in SQL: its version, rules and their revisions, whole-list replacement.

Single lists and their entries are in `app.store.lists`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, RowMapping, Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import pg_fastpath
from app.store.locks import lock_rows
from app.store.models import ListEntryRow, ListRow, PolicyStateRow, RuleRevisionRow, RuleRow
from app.store.policy_rows import LoadedPolicy, PolicyEntry, PolicyList, RuleRevision, StoredRule
from app.store.thread_connection import run_beside

state = cast(Table, PolicyStateRow.__table__)
rules = cast(Table, RuleRow.__table__)
lists = cast(Table, ListRow.__table__)
entries = cast(Table, ListEntryRow.__table__)


async def policy_version(conn: AsyncConnection, *, for_update: bool = False) -> int:
    if conn.dialect.name == "postgresql" and not for_update:
        return await pg_fastpath.policy_version(conn)
    if for_update:
        await lock_rows(conn, state, state.c.id == 1)  # SQLite: serialises policy changes
        return int((await conn.execute(_VERSION.with_for_update())).scalar_one())
    # Each SQLite group commit's batch reads it first (its prologue): one statement, built
    # once and run on the cursor there (store/sqlite_statements.py); no deferred write
    # touches the policy state, so it may run beside them.
    return int((await run_beside(conn, _VERSION, {})).scalar_one())


_VERSION = select(state.c.version).where(state.c.id == 1)


async def bump_version(conn: AsyncConnection, *, now: datetime, actor: str | None) -> int:
    """Mark the policy changed; every worker reloads it on its next request. The connection
    is marked too (`changed_on`), for whoever commits it to tell the counters in Redis."""
    stmt = (
        update(state)
        .where(state.c.id == 1)
        .values(version=state.c.version + 1, updated_at=now, updated_by=actor)
        .returning(state.c.version)
    )
    version = int((await conn.execute(stmt)).scalar_one())
    conn.info[_CHANGED] = True
    return version


_CHANGED = "verifyguard.policy_changed"


def changed_on(conn: AsyncConnection) -> bool:
    """Whether a policy change was made on `conn` since last asked (the mark is cleared). A
    mark left by a transaction rolled back reads as a change: telling the counters the
    committed version again is harmless."""
    return bool(conn.info.pop(_CHANGED, False))


async def load_policy_rows(conn: AsyncConnection, *, with_lists: bool = True) -> LoadedPolicy:
    """Everything needed to build the Policy model: version, default, rules, lists (none
    without `with_lists`: the caller reads them itself, services/policy/held_lists.py)."""
    version_row = (await conn.execute(select(state).where(state.c.id == 1))).mappings().one()
    list_rows: Sequence[RowMapping] = ()
    entry_rows: Sequence[Row[Any]] = ()
    if with_lists:
        list_rows = (await conn.execute(select(lists).order_by(lists.c.name))).mappings().all()
        used = (entries.c.list_id, entries.c.value, entries.c.note, entries.c.expires_at)
        entry_rows = (await conn.execute(select(*used).order_by(entries.c.id))).all()
    by_list: dict[int, list[PolicyEntry]] = {row["id"]: [] for row in list_rows}
    for list_id, value, note, expires_at in entry_rows:  # tuples: lists run to many thousands
        by_list.setdefault(list_id, []).append(
            PolicyEntry(value=value, note=note, expires_at=expires_at)
        )
    return LoadedPolicy(
        version=int(version_row["version"]),
        default_action=version_row["default_action"],
        alerting=version_row["alerting"],
        rules=await rule_rows(conn),
        lists=[
            PolicyList(
                name=row["name"],
                kind=row["kind"],
                description=row["description"],
                entries=by_list[row["id"]],
            )
            for row in list_rows
        ],
    )


revisions = cast(Table, RuleRevisionRow.__table__)
_revision_columns = [revisions.c[f.name] for f in fields(RuleRevision)]


async def rule_count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(rules))).scalar_one())


async def insert_rule(
    conn: AsyncConnection,
    *,
    document: dict[str, Any],
    now: datetime,
    actor: str | None,
    rule_id: int | None = None,
    revision: int = 1,
) -> int:
    """Insert a rule; `rule_id` brings a deleted rule back under its old id."""
    values = {**_rule_columns(document), "revision": revision}
    if rule_id is not None:
        values["id"] = rule_id
    stmt = insert(rules).values(**values, created_at=now, updated_at=now, updated_by=actor)
    return int((await conn.execute(stmt.returning(rules.c.id))).scalar_one())


async def rule_rows(conn: AsyncConnection) -> list[StoredRule]:
    """Every rule row, in evaluation order."""
    stmt = select(rules).order_by(rules.c.priority, rules.c.name)
    return [StoredRule(**row) for row in (await conn.execute(stmt)).mappings()]


async def rule_row(conn: AsyncConnection, rule_id: int) -> StoredRule | None:
    row = (await conn.execute(select(rules).where(rules.c.id == rule_id))).mappings().first()
    return StoredRule(**row) if row is not None else None


async def rule_id_by_name(conn: AsyncConnection, name: str) -> int | None:
    stmt = select(rules.c.id).where(rules.c.name == name)
    found = (await conn.execute(stmt)).scalar_one_or_none()
    return int(found) if found is not None else None


async def revision_rows(conn: AsyncConnection, rule_id: int) -> list[RuleRevision]:
    """A rule's history, newest first (kept after the rule is deleted)."""
    stmt = (
        select(*_revision_columns)
        .where(revisions.c.rule_id == rule_id)
        .order_by(revisions.c.revision.desc())
    )
    return [RuleRevision(**row) for row in (await conn.execute(stmt)).mappings()]


async def revision_row(conn: AsyncConnection, rule_id: int, revision: int) -> RuleRevision | None:
    stmt = select(*_revision_columns).where(
        revisions.c.rule_id == rule_id, revisions.c.revision == revision
    )
    row = (await conn.execute(stmt)).mappings().first()
    return RuleRevision(**row) if row is not None else None


async def update_rule(
    conn: AsyncConnection,
    *,
    rule_id: int,
    document: dict[str, Any],
    revision: int,
    now: datetime,
    actor: str | None,
) -> None:
    stmt = (
        update(rules)
        .where(rules.c.id == rule_id)
        .values(**_rule_columns(document), revision=revision, updated_at=now, updated_by=actor)
    )
    await conn.execute(stmt)


async def delete_rule(conn: AsyncConnection, rule_id: int) -> None:
    await conn.execute(delete(rules).where(rules.c.id == rule_id))


async def add_revision(conn: AsyncConnection, row: RuleRevision) -> None:
    values = {f.name: getattr(row, f.name) for f in fields(RuleRevision)}
    await conn.execute(insert(revisions).values(**values))


async def next_revision(conn: AsyncConnection, rule_id: int) -> int:
    stmt = select(func.max(revisions.c.revision)).where(revisions.c.rule_id == rule_id)
    return int((await conn.execute(stmt)).scalar_one_or_none() or 0) + 1


async def replace_lists(
    conn: AsyncConnection, *, named_lists: Sequence[PolicyList], now: datetime, actor: str | None
) -> None:
    """Drop every list and write the given ones (policy import)."""
    await conn.execute(delete(entries))
    await conn.execute(delete(lists))
    for named in named_lists:
        stmt = insert(lists).values(
            name=named.name, kind=named.kind, description=named.description, created_at=now
        )
        list_id = (await conn.execute(stmt.returning(lists.c.id))).scalar_one()
        rows = [
            {
                "list_id": list_id,
                "value": entry.value,
                "note": entry.note,
                "expires_at": entry.expires_at,
                "created_at": now,
                "created_by": actor,
            }
            for entry in named.entries
        ]
        if rows:
            await conn.execute(insert(entries), rows)


async def set_alerting(conn: AsyncConnection, document: dict[str, Any] | None) -> None:
    """The policy's channels, alerts and never_contain lists (None: none of them)."""
    await conn.execute(update(state).where(state.c.id == 1).values(alerting=document))


async def set_default_action(conn: AsyncConnection, action: str | None) -> None:
    await conn.execute(update(state).where(state.c.id == 1).values(default_action=action))


def _rule_columns(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": document["name"],
        "priority": document["priority"],
        "mode": document["mode"],
        "action": document["action"],
        "reason": document["reason"],
        "document": document,
    }
