"""The micro-batcher behind PostgreSQL's shared outcome transactions (intake/batching.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from app.services.intake.batching import Batcher


class Writer:
    """Records the batches it is given; holds each until released, if asked to."""

    def __init__(self, *, hold: bool = False, bad: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()  # a first batch is being written
        if not hold:
            self.release.set()
        self.bad = bad

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        await self.release.wait()
        if self.bad in items:
            raise ValueError(f"bad item {self.bad}")
        return [item * 10 for item in items]


async def test_a_lone_item_is_written_at_once_alone() -> None:
    writer = Writer()
    batcher: Batcher[int, int] = Batcher(writer)
    assert await batcher.submit(1) == 10
    assert writer.batches == [[1]]
    await batcher.close()


async def test_items_arriving_during_a_write_form_the_next_batch_in_order() -> None:
    writer = Writer(hold=True)
    batcher: Batcher[int, int] = Batcher(writer, limit=3)
    first = asyncio.create_task(batcher.submit(0))
    await writer.started.wait()  # the writer took it and waits on the database
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    writer.release.set()
    assert [await t for t in [first, *rest]] == [0, 10, 20, 30, 40, 50]
    assert writer.batches == [[0], [1, 2, 3], [4, 5]]
    await batcher.close()


async def test_a_failed_batch_is_tried_item_by_item() -> None:
    writer = Writer(hold=True, bad=2)
    batcher: Batcher[int, int] = Batcher(writer)
    first = asyncio.create_task(batcher.submit(0))
    await writer.started.wait()
    rest = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    writer.release.set()
    assert await first == 0
    assert await rest[0] == 10
    with pytest.raises(ValueError, match="bad item 2"):
        await rest[1]
    assert await rest[2] == 30
    assert writer.batches == [[0], [1, 2, 3], [1], [2], [3]]
    await batcher.close()


async def test_a_batch_failing_for_a_reason_not_split_fails_whole() -> None:
    writer = Writer(hold=True, bad=2)
    batcher: Batcher[int, int] = Batcher(writer, split=lambda exc: False)
    first = asyncio.create_task(batcher.submit(0))
    await writer.started.wait()
    rest = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    writer.release.set()
    assert await first == 0
    for task in rest:
        with pytest.raises(ValueError, match="bad item 2"):
            await task
    assert writer.batches == [[0], [1, 2]]
    await batcher.close()


async def test_close_waits_for_the_batch_being_written() -> None:
    writer = Writer(hold=True)
    batcher: Batcher[int, int] = Batcher(writer)
    pending = asyncio.create_task(batcher.submit(7))
    await writer.started.wait()
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    assert not closing.done()
    writer.release.set()
    await closing
    assert pending.result() == 70


async def test_with_two_in_flight_an_item_arriving_during_a_write_starts_its_own() -> None:
    writer = Writer(hold=True)
    batcher: Batcher[int, int] = Batcher(writer, concurrency=2)
    first = asyncio.create_task(batcher.submit(0))
    await writer.started.wait()
    second = asyncio.create_task(batcher.submit(1))
    for _ in range(5):  # turns of the loop, not time
        await asyncio.sleep(0)
    assert writer.batches == [[0], [1]]  # written beside the first, not after it
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert writer.batches == [[0], [1]]  # two in flight: the next batch gathers
    writer.release.set()
    assert [await t for t in [first, second, *rest]] == [0, 10, 20, 30]
    assert writer.batches == [[0], [1], [2, 3]]
    await batcher.close()


async def test_with_two_in_flight_a_batch_is_written_in_the_turn_its_writer_wakes() -> None:
    """No task per batch: a writer wakes the loop turn after the item arrives and writes it
    then (a task of its own would start a turn later, behind everything else ready then)."""
    writer = Writer()
    batcher: Batcher[int, int] = Batcher(writer, concurrency=2)
    assert await batcher.submit(0) == 0  # the writers are up and waiting
    pending = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # the item is queued, its writer woken
    await asyncio.sleep(0)  # the writer's turn
    assert writer.batches == [[0], [1]]
    assert await pending == 10
    await batcher.close()
