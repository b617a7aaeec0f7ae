"""Named-list administration: create, delete, add and remove entries in bulk, import CSV.

Every change locks the policy and bumps its version, so each worker reloads its lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Conflict, NotFound, Unprocessable
from app.rules.model import E164, ListEntry, NamedList, Rule
from app.services.policy.admin import lock_policy
from app.services.policy.list_csv import parse_entries
from app.services.policy.rules import list_references
from app.services.tokens import Principal
from app.store import lists as store
from app.store import policy as policy_store


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryView:
    """A list entry as shown: `active` until it expires."""

    value: str
    note: str
    expires_at: datetime | None
    active: bool
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListView:
    """A named list as shown, with every entry (expired ones too)."""

    name: str
    kind: str
    description: str
    created_at: datetime
    entries: list[EntryView]


async def list_lists(conn: AsyncConnection, *, now: datetime) -> list[store.ListWithCounts]:
    return await store.list_summaries(conn, now=now)


async def get_list(conn: AsyncConnection, *, name: str, now: datetime) -> ListView:
    row = await _existing(conn, name)
    entries = [
        EntryView(
            value=entry.value,
            note=entry.note,
            expires_at=entry.expires_at,
            active=entry.expires_at is None or entry.expires_at > now,
            created_at=entry.created_at,
            created_by=entry.created_by,
        )
        for entry in await store.entry_rows(conn, row.id)
    ]
    return ListView(
        name=row.name,
        kind=row.kind,
        description=row.description,
        created_at=row.created_at,
        entries=entries,
    )


async def create_list(
    conn: AsyncConnection, *, named: NamedList, by: Principal, now: datetime
) -> ListView:
    await lock_policy(conn)
    if await store.list_row(conn, named.name) is not None:
        raise Conflict(
            f"a list named {named.name!r} exists",
            code="list_name_taken",
            errors=[{"loc": "name", "msg": f"a list named {named.name!r} exists"}],
        )
    list_id = await store.create_list(
        conn, name=named.name, kind=named.kind, description=named.description, now=now
    )
    await store.upsert_entries(conn, list_id, _rows(named.entries), now=now, actor=by.name)
    await policy_store.bump_version(conn, now=now, actor=by.name)
    return await get_list(conn, name=named.name, now=now)


async def delete_list(conn: AsyncConnection, *, name: str, by: Principal, now: datetime) -> None:
    """Delete a list no rule refers to (the policy would not be valid without it)."""
    await lock_policy(conn)
    row = await _existing(conn, name)
    users = [
        rule.name
        for rule in await policy_store.rule_rows(conn)
        if any(ref == name for _, ref in list_references(_when(rule.document), "when"))
    ]
    if users:
        raise Conflict(f"list {name!r} is used by rule(s) {', '.join(users)}", code="list_in_use")
    await store.delete_list(conn, row.id)
    await policy_store.bump_version(conn, now=now, actor=by.name)


async def add_entries(
    conn: AsyncConnection,
    *,
    name: str,
    entries: Sequence[ListEntry],
    by: Principal,
    now: datetime,
) -> dict[str, int]:
    """Add entries; a value already listed takes the new note and expiry."""
    await lock_policy(conn)
    row = await _existing(conn, name)
    _check_kind(row.kind, [(f"entries.{i}", entry) for i, entry in enumerate(entries)])
    latest = list({entry.value: entry for entry in entries}.values())
    known = await store.existing_values(conn, row.id, [entry.value for entry in latest])
    await store.upsert_entries(conn, row.id, _rows(latest), now=now, actor=by.name)
    await policy_store.bump_version(conn, now=now, actor=by.name)
    return {"added": len(latest) - len(known), "updated": len(known)}


async def remove_entries(
    conn: AsyncConnection, *, name: str, values: Sequence[str], by: Principal, now: datetime
) -> dict[str, int]:
    await lock_policy(conn)
    row = await _existing(conn, name)
    removed = await store.delete_entries(conn, row.id, normalised_values(values))
    if removed:
        await policy_store.bump_version(conn, now=now, actor=by.name)
    return {"removed": removed}


async def import_csv(
    conn: AsyncConnection, *, name: str, text: str, by: Principal, now: datetime
) -> dict[str, int]:
    """Add the entries of a CSV document (value,note,expires_at; the header is optional)."""
    lines = parse_entries(text)
    row = await _existing(conn, name)
    _check_kind(row.kind, [(f"line {line}", entry) for line, entry in lines])
    entries = [entry for _, entry in lines]
    return await add_entries(conn, name=name, entries=entries, by=by, now=now)


def normalised_values(values: Sequence[str]) -> list[str]:
    """Values spelled as list entries store them (`+46 70-123` -> `+4670123`); 422 otherwise."""
    out, errors = [], []
    for index, value in enumerate(values):
        try:
            out.append(ListEntry(value=value).value)
        except ValidationError as exc:
            errors.append({"loc": f"values.{index}", "msg": exc.errors()[0]["msg"]})
    if errors:
        raise Unprocessable.listing(errors)
    return out


def _check_kind(kind: str, entries: Sequence[tuple[str, ListEntry]]) -> None:
    """A number list takes whole E.164 numbers only (a prefix list takes any digits)."""
    if kind != "number":
        return
    errors = [
        {"loc": f"{loc}.value", "msg": f"{entry.value!r} is not an E.164 number"}
        for loc, entry in entries
        if not re.match(E164, entry.value)
    ]
    if errors:
        raise Unprocessable.listing(errors)


def _rows(entries: Sequence[ListEntry]) -> list[store.NewEntry]:
    return [
        store.NewEntry(value=entry.value, note=entry.note, expires_at=entry.expires_at)
        for entry in entries
    ]


def _when(document: dict[str, Any]) -> Any:
    return Rule.model_validate(document).when


async def _existing(conn: AsyncConnection, name: str) -> store.ListInfo:
    row = await store.list_row(conn, name)
    if row is None:
        raise NotFound(f"no list {name!r}", code="list_not_found")
    return row
