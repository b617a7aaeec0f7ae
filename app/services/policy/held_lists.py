"""The lists of the policy loaded last, kept for the next load (PolicyCache's).

Every change to the policy bumps its version, and each process then loads the whole policy
again. Lists are most of it: two lists of 20,000 numbers took ~0.45 s of the event loop to
read and validate on this project's machine, a stall that answered the request events
waiting for it with the fallback, at each edit. Most edits touch one list, and most add to
it (a number blocked during an attack). So a load reads each list's tally first
(store/list_tallies.py): a list whose tally is unchanged is reused as it was validated; a
list that only gained entries reads and validates those alone; any other list is read again
whole. Lists are rebuilt as new frozen models, never changed in place, so a policy compiled
earlier keeps the lists it had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.model import ListEntry, NamedList
from app.store import list_tallies as store
from app.store.list_tallies import TalliedEntry, Tally
from app.store.lists import ListInfo

NONE = Tally()


@dataclass(frozen=True, slots=True)
class _Held:
    head: ListInfo
    tally: Tally
    named: NamedList


class HeldLists:
    """Loads the lists, reusing those of the load before (see the module docstring)."""

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self.read = 0
        """Entries read by loads so far (whole lists and added entries)."""

    async def load(self, conn: AsyncConnection) -> list[NamedList]:
        before = self._held  # as this load found it: another may replace it meanwhile
        heads = await store.list_heads(conn)
        now = await store.tallies(conn)
        since: dict[int, int] = {}  # list id: read its entries above this id
        for head in heads:
            held = before.get(head.id)
            tally = now.get(head.id, NONE)
            if held is None or held.head != head:
                since[head.id] = 0
            elif held.tally != tally:
                grew = tally.count > held.tally.count and tally.last_id > held.tally.last_id
                since[head.id] = held.tally.last_id if grew else 0
        read = await self._read(conn, since)
        again = {
            head.id: 0
            for head in heads
            if since.get(head.id)
            and before[head.id].tally + Tally.of(read[head.id]) != now.get(head.id, NONE)
        }
        read |= await self._read(conn, again)  # changed otherwise meanwhile: whole
        held_now: dict[int, _Held] = {}
        for head in heads:
            if head.id not in since:
                held_now[head.id] = before[head.id]
                continue
            rows = read[head.id]
            kept = before[head.id] if since[head.id] and head.id not in again else None
            named = _validated(head, kept.named.entries if kept is not None else (), rows)
            tally = (kept.tally if kept is not None else NONE) + Tally.of(rows)
            held_now[head.id] = _Held(head, tally, named)
        self._held = held_now
        return [held_now[head.id].named for head in heads]

    async def _read(
        self, conn: AsyncConnection, since: dict[int, int]
    ) -> dict[int, list[TalliedEntry]]:
        by_list: dict[int, list[TalliedEntry]] = {list_id: [] for list_id in since}
        for row in await store.entries_since(conn, since):
            by_list[row.list_id].append(row)
        self.read += sum(len(rows) for rows in by_list.values())
        return by_list


def _validated(head: ListInfo, before: Sequence[ListEntry], rows: list[TalliedEntry]) -> NamedList:
    """The list as a model: the entries it had and `rows` after them. Only `rows` are
    validated: the entries held were, with the list before (validating 20,000 again took
    ~15 ms, at every edit)."""
    added = NamedList.model_validate(
        {
            "name": head.name,
            "kind": head.kind,
            "description": head.description,
            "entries": [
                {"value": row.value, "note": row.note, "expires_at": row.expires_at} for row in rows
            ],
        }
    )
    return added.model_copy(update={"entries": [*before, *added.entries]}) if before else added
