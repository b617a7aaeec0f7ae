"""The spool on its own: order, durability across a reopen, group commits, parking."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from app.store.spool import Spool


async def test_entries_come_back_in_order_after_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool" / "spool.db")
    await spool.open()
    for n in range(3):
        await spool.append("callback", {"n": n})
    await spool.close()
    again = Spool(tmp_path / "spool" / "spool.db")
    await again.open()
    try:
        assert again.depth == 3
        assert [e.payload["n"] for e in await again.head(10)] == [0, 1, 2]
    finally:
        await again.close()


async def test_concurrent_appends_are_all_written_once_in_sequence(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    await spool.open()
    try:
        seqs = await asyncio.gather(*(spool.append("decision", {"n": n}) for n in range(200)))
        assert sorted(seqs) == seqs, "sequence numbers follow the order of the calls"
        entries = await spool.head(500)
        assert [e.payload["n"] for e in entries] == list(range(200))
        await spool.remove([e.seq for e in entries[:150]])
        assert spool.depth == 50
        assert (await spool.head(1))[0].payload["n"] == 150
    finally:
        await spool.close()


async def test_appends_made_while_a_group_waits_out_its_pace_share_it(tmp_path: Path) -> None:
    """A lone append is written at once; the next group waits until PACE after it, and what
    is appended meanwhile joins it: one transaction (one fsync) for both."""
    spool = Spool(tmp_path / "spool.db", pace=0.5)
    await spool.open()
    try:
        await spool.append("callback", {"n": 0})
        second = asyncio.ensure_future(spool.append("callback", {"n": 1}))
        await asyncio.sleep(0)  # the writer takes it, and waits out the pace
        third = asyncio.ensure_future(spool.append("callback", {"n": 2}))
        assert await asyncio.gather(second, third) == [2, 3]
        assert spool.groups == 2
        assert [e.payload["n"] for e in await spool.head(5)] == [0, 1, 2]
    finally:
        await spool.close()


async def test_an_appended_entry_is_on_disk_before_append_returns(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    await spool.open()
    try:
        await spool.append("callback", {"kept": True})
        # Another connection (another process after a crash) sees it committed.
        with sqlite3.connect(tmp_path / "spool.db") as other:
            assert other.execute("SELECT count(*) FROM spool").fetchone()[0] == 1
    finally:
        await spool.close()


async def test_a_parked_entry_leaves_the_queue_but_is_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    await spool.open()
    try:
        await spool.append("callback", {"bad": True})
        await spool.append("callback", {"good": True})
        first = (await spool.head(1))[0]
        await spool.park(first, "ValueError('poison')")
        assert spool.depth == 1 and await spool.parked() == 1
        assert (await spool.head(5))[0].payload == {"good": True}
    finally:
        await spool.close()


async def test_the_spool_knows_which_verifications_it_holds(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    await spool.open()
    try:
        await spool.append("decision", {"n": 0}, key="v-1")
        await spool.append("callback", {"n": 1}, key="v-1")
        await spool.append("callback", {"n": 2}, key="v-2")
        await spool.append("callback", {"n": 3})  # no verification
        assert spool.holds("v-1") and spool.holds("v-2")
        assert not spool.holds("v-3") and not spool.holds(None)
        first, second, third, _ = await spool.head(4)
        assert (first.key, third.key) == ("v-1", "v-2")
        await spool.remove([first.seq, third.seq])
        assert spool.holds("v-1") and not spool.holds("v-2"), "v-1 has one entry left"
        await spool.park(second, "ValueError('poison')")
        assert not spool.holds("v-1")
    finally:
        await spool.close()
    again = Spool(tmp_path / "spool.db")
    await again.open()
    try:
        assert again.depth == 1 and not again.holds("v-1")
        await again.append("callback", {"n": 4}, key="v-4")
    finally:
        await again.close()
    reopened = Spool(tmp_path / "spool.db")
    await reopened.open()
    try:
        assert reopened.holds("v-4"), "the keys are read back from the file"
    finally:
        await reopened.close()


async def test_a_spool_file_from_before_keys_gets_its_keys_on_open(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with sqlite3.connect(path) as old:  # the schema entries had before they had keys
        old.execute(
            "CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "kind TEXT NOT NULL, payload TEXT NOT NULL)"
        )
        old.execute("INSERT INTO spool (kind, payload) VALUES ('callback', '{\"id\": \"v-9\"}')")
        old.execute("INSERT INTO spool (kind, payload) VALUES ('callback', '{\"other\": 1}')")
    spool = Spool(path, key_of=lambda kind, payload: payload.get("id"))
    await spool.open()
    try:
        assert spool.depth == 2 and spool.holds("v-9")
        assert [e.key for e in await spool.head(5)] == ["v-9", None]
    finally:
        await spool.close()
