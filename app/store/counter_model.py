"""The counter model: what a window is, what an attempt adds, what settling, forgetting and
a success do, and what a read returns. Every backend (SQLite, PostgreSQL, Redis, memory)
only stores `Change`s and sums columns over buckets; the meaning lives here.

Counts are kept per counter key and time bucket, in integer columns (spend in micros of
the currency). An attempt adds one attempt and its spend under each of its keys; under the
keys an allowed-only limit reads it is also *held* until decided, written straight into
the allowed columns (a hold counts as allowed), so a burst cannot overrun such a limit
while its attempts are being decided. Settling an allowed attempt changes nothing (its
hold already is its allowed count: no row is written); settling a denied one takes the
hold back; forgetting (a redelivery) takes the whole count back; a success is credited to
the bucket of the attempt's request. The `pending` columns are no longer written: rows
from before (and from a process of an older version still running) may hold pending, and
every read sums it with allowed, so holds and settles of either version add up. A window
of W seconds covers the ceil(W / bucket) most recent buckets, the current one included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

Measure = Literal["attempts", "allowed", "spend", "allowed_spend", "successes"]

VALUE_COLUMNS = (
    "attempts",
    "allowed",
    "pending",
    "spend_micros",
    "allowed_spend_micros",
    "pending_spend_micros",
    "successes",
)
"""Every counter row's integer columns, in storage order."""

READS: dict[Measure, tuple[str, ...]] = {
    "attempts": ("attempts",),
    "allowed": ("allowed", "pending"),
    "spend": ("spend_micros",),
    "allowed_spend": ("allowed_spend_micros", "pending_spend_micros"),
    "successes": ("successes",),
}
"""The columns a measure sums: attempts still being decided count as allowed (their holds
are written into `allowed`; `pending` is read for rows written before that)."""

MICROS = 1_000_000
_MONEY: frozenset[Measure] = frozenset({"spend", "allowed_spend"})


class WindowQuery(NamedTuple):
    """One window to read: a key's measure over the last `window_seconds`.

    A named tuple, not a frozen dataclass: a request event builds ~10 and hashes each ~3
    times as a dict key, and a dataclass's generated __init__ and __hash__ are Python code
    (~8 us of a request event, against ~3 us so)."""

    key: str
    window_seconds: int
    measure: Measure


class Reads(NamedTuple):
    """The windows to read, as of `now`. A named tuple, as `WindowQuery` and the other
    values made once per request event here (`CounterDeltas`, `Attempt`): a frozen
    dataclass's __init__ sets each field through object.__setattr__ (~6k instructions for
    three fields, against ~3.5k for a named tuple)."""

    queries: Sequence[WindowQuery]
    now: datetime


class CounterDeltas(NamedTuple):
    """A change: deltas to add to the counters of some keys in one bucket."""

    keys: tuple[str, ...]
    bucket: int
    deltas: Mapping[str, int]


class BucketClock:
    """Buckets are `size` seconds long, aligned to the epoch."""

    def __init__(self, bucket_seconds: int) -> None:
        self.size = bucket_seconds

    def bucket(self, moment: datetime) -> int:
        epoch = int(moment.timestamp())
        return epoch - epoch % self.size

    def oldest(self, now: datetime, window_seconds: int) -> int:
        """The first bucket of a window ending with the current one."""
        return self.first(self.bucket(now), window_seconds)

    def first(self, current: int, window_seconds: int) -> int:
        """The first bucket of a window ending with bucket `current` (`oldest` for a caller
        that has the current bucket already: `bucket` reads the clock's timestamp)."""
        buckets = max(1, math.ceil(window_seconds / self.size))
        return current - (buckets - 1) * self.size


class Attempt(NamedTuple):
    """One request event as the counters see it: its keys, where it is held, its bucket."""

    keys: tuple[str, ...]
    held: tuple[str, ...]
    bucket: int
    spend_micros: int

    @classmethod
    def of(
        cls, keys: set[str], held: set[str], *, clock: BucketClock, now: datetime, spend: int
    ) -> Attempt:
        """Keys sorted (backends lock rows in one order), held keys among them."""
        return cls(tuple(sorted(keys)), tuple(sorted(held & keys)), clock.bucket(now), spend)

    def counted(self) -> tuple[CounterDeltas, ...]:
        """What counting the attempt adds."""
        return self._changes(1)

    def forgotten(self) -> tuple[CounterDeltas, ...]:
        """What a redelivery takes back: the count, and the hold (it was never settled)."""
        return self._changes(-1)

    def settled(self, *, allowed: bool) -> CounterDeltas | None:
        """What deciding it adds: a denied attempt's hold taken back. None if it writes
        nothing: never held, or allowed (the hold is its allowed count already)."""
        if not self.held or allowed:
            return None
        deltas = {"allowed": -1, "allowed_spend_micros": -self.spend_micros}
        return CounterDeltas(self.held, self.bucket, deltas)

    def _changes(self, sign: int) -> tuple[CounterDeltas, ...]:
        if not self.keys:
            return ()
        spend = sign * self.spend_micros
        count = CounterDeltas(self.keys, self.bucket, {"attempts": sign, "spend_micros": spend})
        if not self.held:
            return (count,)
        hold = CounterDeltas(
            self.held, self.bucket, {"allowed": sign, "allowed_spend_micros": spend}
        )
        return (count, hold)


def succeeded(keys: set[str], *, clock: BucketClock, requested_at: datetime) -> CounterDeltas:
    """A verification ended SUCCESSFUL: credited to the bucket of its request."""
    return CounterDeltas(tuple(sorted(keys)), clock.bucket(requested_at), {"successes": 1})


def value(query: WindowQuery, total: int) -> float:
    """What a read returns, from the sum of the measure's columns over the window."""
    return total / MICROS if query.measure in _MONEY else float(total)


def peeked(query: WindowQuery, total: int, spend_micros: int) -> float:
    """What counting one more attempt would read, without counting it. Allowed-only
    measures leave the attempt out: the engine adds it itself when comparing."""
    if query.measure == "attempts":
        total += 1
    elif query.measure == "spend":
        total += spend_micros
    return value(query, total)


def without_own(query: WindowQuery, read: float, spend_micros: int) -> float:
    """An allowed-only read, less the attempt being decided (counted pending as allowed):
    the engine adds it itself when comparing."""
    if query.measure == "allowed":
        return read - 1.0
    if query.measure == "allowed_spend":
        return read - spend_micros / MICROS
    return read


def decided_value(query: WindowQuery, total: int, spend_micros: int) -> float:
    """`without_own(query, value(query, total), spend_micros)`, in one call and the same
    arithmetic: what the engine reads of a window while the attempt is decided (~10 reads
    a request event)."""
    measure = query.measure
    if measure == "allowed":
        return float(total) - 1.0
    if measure == "allowed_spend":
        return total / MICROS - spend_micros / MICROS
    return total / MICROS if measure == "spend" else float(total)


def to_micros(amount: float | None) -> int:
    return round(amount * MICROS) if amount else 0


def touched(changes: Sequence[CounterDeltas]) -> tuple[str, ...]:
    """Every key the changes write, sorted (rows are locked in one order)."""
    return tuple(sorted({key for change in changes for key in change.keys}))


Changes = Sequence[CounterDeltas]
Totals = dict[WindowQuery, int]
"""Per query, the sum of its measure's columns over its window."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond storing changes and summing windows."""

    checks_policy_version: bool = False
    """`observe` can count only if the policy is still at a version (it lives beside it)."""
    joins_store: bool = False
    """Its changes can be applied by the decision's own store statement (same database)."""


class CounterBackend(Protocol):
    """Stores changes and sums columns over buckets; the model gives both their meaning.

    `conn` is the request's counting connection (SQL backends); others ignore it. Reads
    return, per query, the sum of `READS[measure]` over the window's buckets.
    """

    clock: BucketClock
    capabilities: Capabilities

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def apply(self, conn: Any, changes: Changes) -> None: ...

    async def observe(
        self, conn: Any, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        """Apply the changes, then read the windows (them included), atomically: concurrent
        attempts see distinct totals. With `version` (only where the capability says so),
        nothing is applied and None returned unless the policy is still at that version."""
        ...

    async def read(self, conn: Any, reads: Reads) -> Totals: ...
