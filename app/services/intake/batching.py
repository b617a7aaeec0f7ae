"""Micro-batching: items submitted while a batch is being written form the next batch.

`Batcher.submit(item)` returns the item's outcome once its batch is written. A writer
takes whatever is queued (a lone item at once, without waiting for company), and while
that batch is written the next one gathers. So batches grow with the load and add no
latency when idle. If a batch of several fails as a whole, each item is tried alone, so
one bad item costs the others nothing.

`concurrency` batches may be in flight at once (1: one at a time): that many writers, each
writing its batch itself (no task per batch, which would start a loop turn later, behind
everything else ready then). With 2, an item that arrives while a batch is being written
starts its own at once rather than waiting for a batch it did not join: where the batches
commute (the PostgreSQL store batches: rows locked in key order, sums of settles) this
takes a whole commit off such an item's wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")
Write = Callable[[Sequence[In]], Awaitable[Sequence[Out]]]


@dataclass(eq=False, slots=True)
class Batcher(Generic[In, Out]):
    write: Write[In, Out]
    """Writes a batch (one transaction); an outcome per item, in order."""
    limit: int = 256
    """Items per batch at most."""
    name: str = "verifyguard-batcher"
    on_batch: Callable[[int], None] | None = None
    on_written: Callable[[int, float], None] | None = None
    """A batch's size and the seconds its write took (for admission), once written."""
    split: Callable[[Exception], bool] = lambda exc: True
    """Whether a failed batch is tried again item by item (not when the database is away)."""
    concurrency: int = 1
    """Batches in flight at most (one writer each)."""
    _queue: list[tuple[In, asyncio.Future[Out]]] = field(default_factory=list, init=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _writers: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _writing: dict[object, list[asyncio.Future[Out]]] = field(default_factory=dict, init=False)
    """The items of each batch in flight (by a token of its own)."""

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wakeup.set()
        if not self._writers or any(task.done() for task in self._writers):
            self._start()
        return await future

    async def close(self) -> None:
        """Finish what is being written and what is queued, then stop."""
        writing = [future for futures in self._writing.values() for future in futures]
        waiting = [*writing, *(future for _, future in self._queue)]
        await asyncio.gather(*waiting, return_exceptions=True)
        for task in self._writers:
            task.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        self._writers = []

    def _start(self) -> None:
        alive = [task for task in self._writers if not task.done()]
        missing = self.concurrency - len(alive)
        self._writers = alive + [
            asyncio.create_task(self._writer(), name=self.name) for _ in range(missing)
        ]

    async def _writer(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._queue:  # another writer took it
                self._wakeup.clear()
                continue
            batch, self._queue = self._queue[: self.limit], self._queue[self.limit :]
            if not self._queue:
                self._wakeup.clear()
            token = object()
            self._writing[token] = [future for _, future in batch]
            try:
                await self._write(batch)
            finally:
                del self._writing[token]

    async def _write(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        if self.on_batch is not None:
            self.on_batch(len(batch))
        started = time.perf_counter()
        try:
            outcomes = await self.write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or not self.split(exc):
                for _, future in batch:
                    _settle(future, error=exc)
                return
            for one in batch:  # alone, so that one failing item fails alone
                await self._write([one])
            return
        if self.on_written is not None:
            self.on_written(len(batch), time.perf_counter() - started)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, value=outcome)


def _settle(
    future: asyncio.Future[Out], *, value: Out | None = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]
