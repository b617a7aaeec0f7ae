"""A policy load reuses the lists that did not change and reads only the entries added to
those that grew (services/policy/held_lists.py, store/list_tallies.py); whatever happened
to the lists, it gives what a load from scratch gives."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.model import NamedList
from app.services.policy.held_lists import HeldLists
from app.store import lists as store
from app.store.base import create_engine

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _numbers(rng: random.Random, n: int) -> list[str]:
    return [f"+4670{rng.randrange(10**7):07d}" for _ in range(n)]


async def _new_list(engine: AsyncEngine, name: str, values: list[str]) -> int:
    async with engine.begin() as conn:
        list_id = await store.create_list(
            conn, name=name, kind="number", description=f"{name} list", now=NOW
        )
        await _add(engine, list_id, values, conn=conn)
    return list_id


async def _add(
    engine: AsyncEngine,
    list_id: int,
    values: list[str],
    *,
    conn: object = None,
    expires_at: datetime | None = None,
    note: str = "",
) -> None:
    rows = [store.NewEntry(value=v, note=note, expires_at=expires_at) for v in values]
    if conn is not None:
        await store.upsert_entries(conn, list_id, rows, now=NOW, actor="t")  # type: ignore[arg-type]
        return
    async with engine.begin() as begun:
        await store.upsert_entries(begun, list_id, rows, now=NOW, actor="t")


async def _load(engine: AsyncEngine, held: HeldLists) -> list[NamedList]:
    async with engine.connect() as conn:
        return await held.load(conn)


def _seen(named: list[NamedList]) -> list[tuple[str, list[tuple[str, str, datetime | None]]]]:
    return [(n.name, [(e.value, e.note, e.expires_at) for e in n.entries]) for n in named]


async def _matches_a_fresh_load(engine: AsyncEngine, held: HeldLists) -> list[NamedList]:
    loaded = await _load(engine, held)
    assert _seen(loaded) == _seen(await _load(engine, HeldLists()))
    return loaded


async def test_unchanged_lists_are_reused_and_added_entries_read_alone(
    engine: AsyncEngine,
) -> None:
    rng = random.Random(1)
    block = await _new_list(engine, "blocklist", _numbers(rng, 300))
    await _new_list(engine, "allowlist", _numbers(rng, 200))
    held = HeldLists()
    first = await _matches_a_fresh_load(engine, held)
    assert held.read == 500

    again = await _load(engine, held)
    assert held.read == 500  # nothing read
    assert all(a is b for a, b in zip(again, first, strict=True))

    await _add(engine, block, ["+46709999999", "+46709999998"])
    grown = await _matches_a_fresh_load(engine, held)
    assert held.read == 502  # the two added entries alone
    assert grown[0] is first[0]  # the allowlist, untouched
    assert grown[1] is not first[1] and len(first[1].entries) == 300  # never changed in place
    assert [e.value for e in grown[1].entries][-2:] == ["+46709999999", "+46709999998"]


async def test_an_entry_changed_in_place_rereads_its_list(engine: AsyncEngine) -> None:
    rng = random.Random(2)
    values = _numbers(rng, 50)
    block = await _new_list(engine, "blocklist", values)
    held = HeldLists()
    await _load(engine, held)
    await _add(engine, block, values[:1], expires_at=NOW + timedelta(hours=1))  # an upsert
    loaded = await _matches_a_fresh_load(engine, held)
    assert held.read == 100
    assert loaded[0].entries[0].expires_at == NOW + timedelta(hours=1)

    for note in ("by hand", "hy band"):  # past VerifyGuard; the second keeps the length
        async with engine.begin() as conn:
            update = text("UPDATE list_entries SET note = :n WHERE value = :v")
            await conn.execute(update, {"n": note, "v": values[3]})
        if note == "hy band" and engine.dialect.name == "sqlite":
            break  # SQLite's term sees a note's length only (list_tallies.py)
        loaded = await _matches_a_fresh_load(engine, held)
        assert loaded[0].entries[3].note == note


async def test_any_sequence_of_changes_loads_as_from_scratch(engine: AsyncEngine) -> None:
    """Adds (new values and known ones), removals, expiries, whole lists dropped and made
    again under the same name, one or several between loads: each held load equals a fresh
    one."""
    rng = random.Random(3)
    ids = {
        "blocklist": await _new_list(engine, "blocklist", _numbers(rng, 40)),
        "allowlist": await _new_list(engine, "allowlist", _numbers(rng, 40)),
    }
    held = HeldLists()
    await _load(engine, held)
    for step in range(60):
        name = rng.choice(sorted(ids))
        async with engine.connect() as conn:
            known = [e.value for e in await store.entry_rows(conn, ids[name])]
        action = rng.choice(["add", "add", "add", "renote", "expire", "remove", "recreate"])
        if action == "add":
            await _add(engine, ids[name], _numbers(rng, rng.randint(1, 5)))
        elif action == "renote" and known:
            await _add(engine, ids[name], rng.sample(known, 1), note=f"step {step}")
        elif action == "expire" and known:
            await _add(engine, ids[name], rng.sample(known, 2), expires_at=NOW)
        elif action == "remove" and known:
            async with engine.begin() as conn:
                await store.delete_entries(conn, ids[name], rng.sample(known, 1))
        elif action == "recreate":
            async with engine.begin() as conn:
                await store.delete_list(conn, ids[name])
            ids[name] = await _new_list(engine, name, _numbers(rng, rng.randint(0, 6)))
        if rng.random() < 0.4:
            await _matches_a_fresh_load(engine, held)
    await _matches_a_fresh_load(engine, held)
