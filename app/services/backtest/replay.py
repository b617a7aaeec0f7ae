"""Replaying history under a candidate: each attempt counted under the candidate's keys in
counters of its own (the counter model in memory, never the live counters),
decided by the pure engine with the windows as of the attempt's own time, and settled by the
candidate's own decision. A success counts from its result's arrival, and only for attempts
the candidate allowed (one it denies would never have been sent, so never verified).

One synchronous loop (no await per attempt), deciding with the trace-less `verdict`; a
decision with its trace is rebuilt only for an attempt kept as a sample (`explain`). The
counters are arrays laid out once per candidate (store/replay_counters): per attempt, each
counter key is looked up once, and each spec reads its window's running sum by index.

Adaptive limits read their verified baselines from the replay too, as of each attempt's
time (live reads them from the stored verifications every few seconds): the successes of the
candidate's allowed attempts under the key, counted once their result arrived, over the last
`verified_in` (one more window of the key's counters) or in the same hour of each of the
last `same_hour_days` days (hourly counts). As live, a key at or below the limit's threshold
is left out (the limit is its floor). The replay reaches back over the longest of them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from app.rules.aggregates import AggregateSpec, BaselineSpec, CounterKey
from app.rules.engine import CompiledPolicy, Decision, evaluate
from app.rules.facts import Facts
from app.rules.verdict import Verdict, compile_verdict
from app.services.aggregates import holds_pending
from app.services.backtest.history import attempt_facts, verified
from app.store.backtests import StoredAttempt
from app.store.counter_model import MICROS, to_micros
from app.store.replay_counters import (
    ALLOWED,
    ALLOWED_SPEND,
    ATTEMPTS,
    SPEND,
    SUCCESSES,
    KeyCounts,
    Layout,
    ReplayCounters,
)

_Hourly = tuple[tuple["_SameHour", str, int], ...]
"""Same-hour baselines to credit a success to: (baseline, key, the request's hour)."""
_Arrival = tuple[datetime, int, tuple[KeyCounts, ...], int, _Hourly]
"""A success waiting for its arrival: (result_at, order, the keys' counts, requested bucket,
same-hour baselines)."""
HOUR = 3600
DAY = 86_400

# How each measure reads a window's sums (see `_Read.value`).
_COLUMN = {
    "attempts": ATTEMPTS,
    "allowed_attempts": ALLOWED,
    "spend": SPEND,
    "allowed_spend": ALLOWED_SPEND,
    "successes": SUCCESSES,
}


def longest_window(policy: CompiledPolicy) -> int:
    """The longest window the candidate reads, baselines included, in seconds (0 without
    aggregates)."""
    windows = [spec.window_seconds for spec in policy.aggregates]
    windows += [_reach(baseline) for baseline in policy.baselines]
    return max(windows, default=0)


def _reach(baseline: BaselineSpec) -> int:
    if baseline.same_hour_days is not None:
        return baseline.same_hour_days * DAY + HOUR
    return baseline.window_seconds or 0


@dataclass(frozen=True, slots=True)
class _Kind:
    """One counter key of the candidate: how its windows are laid out, which of them each
    spec reads, and whether its attempts are held (allowed-only limits read it)."""

    key: CounterKey
    read_key: Callable[[Facts], Hashable | None]  # the key's value (its kind's store is its own)
    layout: Layout
    held: bool
    reads: tuple[tuple[str, int, int, bool], ...]  # (spec id, window, column, money)
    baselines: tuple[tuple[str, int, float], ...]  # (baseline id, window, threshold)
    # Its keys, apart from other kinds' (each forgets on its own schedule: a number read over
    # an hour is dropped after an hour, a block with a 14-day baseline after 14 days).
    store: ReplayCounters
    retention: int  # seconds: its longest window and two buckets
    keys: dict[Hashable, KeyCounts] = field(init=False)  # the store's, read per attempt

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", self.store.keys)


def key_reader(key: CounterKey) -> Callable[[Facts], Hashable | None]:
    """What tells one of the key's counters from another: `key.value(facts)` without its
    prefix and without spelling it (None where the fact is missing), its branch on the kind
    of key taken once."""
    if key.key == "global":
        return lambda facts: "global"
    if key.key == "range":
        digits = key.digits or 0
        if digits > 0:
            end = 1 + digits
            return lambda facts: None if (number := facts.number) is None else number[:end]

        def block(facts: Facts) -> str | None:
            number = facts.number
            if number is None or (digits < 0 and len(number) - 1 + digits < 1):
                return None
            return number[:digits] if digits else number[:0]

        return block
    read = attrgetter(key.key)
    return lambda facts: None if (value := read(facts)) is None or value == "" else value


def _kinds(policy: CompiledPolicy, bucket_seconds: int) -> tuple[_Kind, ...]:
    kinds = []
    lasting = {b: above for b, above in policy.baselines.items() if b.same_hour_days is None}
    keys = policy.counter_keys | {baseline.counter_key for baseline in lasting}
    for key in sorted(keys, key=lambda k: k.name):
        specs = sorted((s for s in policy.aggregates if s.counter_key == key), key=_spec_id)
        mine = sorted((b for b in lasting if b.counter_key == key), key=lambda b: b.id)
        lengths = {spec.window_seconds for spec in specs} | {b.window_seconds or 0 for b in mine}
        windows = tuple(sorted(lengths))
        reads = tuple(
            (
                spec.id,
                windows.index(spec.window_seconds),
                _COLUMN[spec.measure],
                spec.measure in ("spend", "allowed_spend"),
            )
            for spec in specs
        )
        baselines = tuple((b.id, windows.index(b.window_seconds or 0), lasting[b]) for b in mine)
        held = any(holds_pending(spec) for spec in specs)
        store = ReplayCounters(bucket_seconds)
        retention = max(windows) + 2 * bucket_seconds
        # A window read only for successes (a baseline's, a `verified`) keeps no rows.
        only = tuple(
            all(column == SUCCESSES for _, at, column, _ in reads if at == w)
            for w in range(len(windows))
        )
        layout = store.layout(windows, only)
        kinds.append(_Kind(key, key_reader(key), layout, held, reads, baselines, store, retention))
    return tuple(kinds)


class _SameHour:
    """A same-hour baseline: per key, successes by the hour of their request (UTC)."""

    def __init__(self, spec: BaselineSpec, above: float) -> None:
        self.spec, self.above = spec, above
        self.days = spec.same_hour_days or 0
        self.hours: dict[str, dict[int, int]] = {}

    def read(self, key: str, hour: int) -> float | None:
        """Successes in this hour of each of the days before; None at or below threshold."""
        counts = self.hours.get(key)
        if counts is None:
            return None
        total = sum(counts.get(hour - day * DAY, 0) for day in range(1, self.days + 1))
        return float(total) if total > self.above else None

    def credit(self, key: str, hour: int) -> None:
        counts = self.hours.setdefault(key, {})
        counts[hour] = counts.get(hour, 0) + 1

    def forget_before(self, hour: int) -> None:
        for key in list(self.hours):
            counts = self.hours[key]
            for stale in [h for h in counts if h < hour]:
                del counts[stale]
            if not counts:
                del self.hours[key]


def _spec_id(spec: AggregateSpec) -> str:
    return spec.id


class Replayer:
    """Decides attempts, given in time order, as the candidate would have."""

    def __init__(self, policy: CompiledPolicy, *, bucket_seconds: int) -> None:
        self.policy = policy
        self._verdict = compile_verdict(policy)
        self.counters = ReplayCounters(bucket_seconds)  # the bucket arithmetic
        self._kinds = _kinds(policy, bucket_seconds)
        # Successes are credited only where something reads them.
        self._credits = any(s.measure == "successes" for s in policy.aggregates) or any(
            kind.baselines for kind in self._kinds
        )
        self._same_hour = tuple(
            _SameHour(spec, above)
            for spec, above in sorted(policy.baselines.items(), key=lambda b: b[0].id)
            if spec.same_hour_days is not None
        )
        self._pending: list[_Arrival] = []
        self._order = itertools.count()
        self._retention = longest_window(policy) + 2 * bucket_seconds
        self._pruned_at: dict[int, int] = {}  # kind (-1: same-hour baselines) -> bucket
        # (history id, key) -> (first, last) attempt, seconds since the epoch
        self._first: dict[tuple[str, str], tuple[float, float]] = {}

    def decide(self, attempt: StoredAttempt) -> tuple[Verdict, Facts]:
        """The candidate's verdict and the facts it read, the counters then updated as live
        would have (`explain(facts)` gives the decision with its trace)."""
        self.arrive(attempt.requested_at)
        # The facts hold this dict: filled once the attempt is counted (a copy of the facts
        # per attempt, as with_aggregates makes, cost ~5% of a replay).
        aggregates: dict[str, float] = {}
        facts = attempt_facts(attempt, aggregates)
        spend = to_micros(facts.price_amount)
        epoch = attempt.requested_at.timestamp()
        bucket = self.counters.bucket(epoch)
        counted, held = self._count(facts, aggregates, bucket, spend)
        if self.policy.histories:
            aggregates.update(self._first_attempts(facts))
        hourly = self._same_hours(facts, aggregates, epoch) if self._same_hour else ()
        outcome = self._verdict(facts)
        if outcome.action == "allow":
            for counts in held:  # settled: allowed (a denied attempt adds nothing)
                counts.allow(spend)
            credited = counted if self._credits else ()
            if (credited or hourly) and verified(attempt):
                arrival = attempt.result_at or attempt.requested_at
                item = (arrival, next(self._order), credited, bucket, hourly)
                heapq.heappush(self._pending, item)
        return outcome, facts

    def _same_hours(self, facts: Facts, aggregates: dict[str, float], epoch: float) -> _Hourly:
        """Read each same-hour baseline for the attempt's keys; the keys, to credit later."""
        hour = int(epoch) - int(epoch) % HOUR
        keys = []
        for baseline in self._same_hour:
            key = baseline.spec.key_value(facts)
            if key is None:
                continue
            keys.append((baseline, key, hour))
            value = baseline.read(key, hour)
            if value is not None:
                aggregates[baseline.spec.id] = value
        return tuple(keys)

    def _count(
        self, facts: Facts, aggregates: dict[str, float], bucket: int, spend: int
    ) -> tuple[tuple[KeyCounts, ...], list[KeyCounts]]:
        """Count the attempt under the candidate's keys, then read each spec's window into
        `aggregates` as `Aggregator.observe` reads it (the attempt counted, and held pending
        under allowed-only keys: `without_own` takes it out again, in the same arithmetic)."""
        counted: list[KeyCounts] = []
        held: list[KeyCounts] = []
        for kind in self._kinds:
            key = kind.read_key(facts)
            if key is None:
                continue
            counts = kind.keys.get(key)  # kind.store.at(key, kind.layout, bucket), inlined
            if counts is None:
                counts = kind.keys[key] = KeyCounts(kind.layout, bucket)
            elif counts.bucket != bucket:
                counts.roll(bucket)
            counts.count(spend)
            counted.append(counts)
            if kind.held:
                held.append(counts)
            sums = counts.sums
            for spec_id, window, column, money in kind.reads:
                total = sums[window][column]
                if not money:
                    aggregates[spec_id] = float(total)
                elif column == SPEND:
                    aggregates[spec_id] = total / MICROS
                else:  # allowed spend: read with its own spend pending, then less it
                    aggregates[spec_id] = (total + spend) / MICROS - spend / MICROS
            for baseline_id, window, above in kind.baselines:
                verified = sums[window][SUCCESSES]
                if verified > above:
                    aggregates[baseline_id] = float(verified)
        return tuple(counted), held

    def explain(self, facts: Facts) -> Decision:
        """The decision with its trace, for facts `decide` returned (the engine is pure)."""
        return evaluate(self.policy, facts)

    def _first_attempts(self, facts: Facts) -> dict[str, float]:
        """`min_history`: each key's first attempt in the replay, as the live shell reads it
        from the stored verifications; a key with no attempt for a whole window starts anew.
        A first attempt longer ago than the window is kept: it is old enough for any
        `min_history` (shorter than the window)."""
        out: dict[str, float] = {}
        now = facts.now.timestamp()
        for history in self.policy.histories:
            key = history.key_value(facts)
            if key is None:
                continue
            first, last = self._first.get((history.id, key), (now, now))
            if now - last > history.window_seconds:
                first = now
            self._first[(history.id, key)] = (first, now)
            out[history.id] = first
        return out

    def prune(self, now: datetime) -> None:
        """Forget buckets no window can read any more, and keys gone silent (memory stays
        flat over a long replay); each kind of key at most four times per its retention
        period (a key that rolls over drops its own old buckets meanwhile)."""
        current = self.counters.bucket(now.timestamp())
        for i, kind in enumerate(self._kinds):
            if self._due(i, current, kind.retention // 4):
                kind.store.forget_before(current - kind.retention)
        if self._same_hour and self._due(-1, current, self._retention):
            for baseline in self._same_hour:
                baseline.forget_before(current - self._retention)

    def _due(self, kind: int, current: int, retention: int) -> bool:
        pruned = self._pruned_at.setdefault(kind, current)
        if current - pruned < retention:
            return False
        self._pruned_at[kind] = current
        return True

    def arrive(self, now: datetime) -> None:
        """Credit every success whose result had arrived by `now`, to its request's bucket."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, keys, bucket, hourly = heapq.heappop(pending)
            for counts in keys:
                counts.add_at(bucket, SUCCESSES, 1)
            for baseline, key, hour in hourly:
                baseline.credit(key, hour)
