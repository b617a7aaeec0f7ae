"""Replaying history under a candidate: each attempt counted under the candidate's keys in
counters of its own (the counter model in memory, never the live counters),
decided by the pure engine with the windows as of the attempt's own time, and settled by the
candidate's own decision. A success counts from its result's arrival, and only for attempts
the candidate allowed (one it denies would never have been sent, so never verified).

One synchronous loop (no await per attempt), deciding with the trace-less `verdict`; a
decision with its trace is rebuilt only for an attempt kept as a sample (`explain`).

Seam for adaptive limits: the engine's aggregate inputs all come from `plan` (what
`Aggregator.observe` counts and reads) on the replayed counters. A limit fed by baselines
of verified counts must take them from these counters too (`Replayer.verified`, as of the
attempt's time), never from a live cache.
"""

from __future__ import annotations

import heapq
import itertools
from datetime import datetime

from app.rules.engine import CompiledPolicy, Decision, evaluate
from app.rules.facts import Facts
from app.rules.verdict import Verdict, verdict
from app.services.aggregates import holds_pending, window_query
from app.services.backtest.history import attempt_facts, verified
from app.store.backtests import StoredAttempt
from app.store.counter_model import (
    Attempt,
    Reads,
    WindowQuery,
    succeeded,
    to_micros,
    value,
    without_own,
)
from app.store.replay_windows import ReplayWindows

_Arrival = tuple[datetime, int, tuple[str, ...], datetime]
"""A success waiting for its arrival: (result_at, order, counter keys, requested_at)."""


def longest_window(policy: CompiledPolicy) -> int:
    """The longest window the candidate reads, in seconds (0 without aggregates)."""
    return max((spec.window_seconds for spec in policy.aggregates), default=0)


class Replayer:
    """Decides attempts, given in time order, as the candidate would have."""

    def __init__(self, policy: CompiledPolicy, *, bucket_seconds: int) -> None:
        self.policy = policy
        retention = longest_window(policy) + 2 * bucket_seconds
        self.counters = ReplayWindows(bucket_seconds)
        # What `plan` computes per attempt, arranged once: each counter key's value is taken
        # once per attempt, and each spec reads its window straight from the running sums.
        self._keys = tuple(policy.counter_keys)
        self._held = tuple({spec.counter_key for spec in policy.aggregates if holds_pending(spec)})
        self._reads = tuple(
            (spec.id, spec.counter_key, window_query(spec, ""))
            for spec in sorted(policy.aggregates, key=lambda spec: spec.id)
        )
        self._pending: list[_Arrival] = []
        self._order = itertools.count()
        self._reads_successes = any(s.measure == "successes" for s in policy.aggregates)
        self._retention = retention
        self._pruned_at: int | None = None
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
        counted = self._count(facts, aggregates)
        if self.policy.histories:
            aggregates.update(self._first_attempts(facts))
        outcome = verdict(self.policy, facts)
        counters = self.counters
        allowed = outcome.action == "allow"
        settle = counted.settled(allowed=allowed)
        if settle is not None:
            counters.apply_now((settle,))
        if allowed and self._reads_successes and verified(attempt) and counted.keys:
            arrival = attempt.result_at or attempt.requested_at
            item = (arrival, next(self._order), counted.keys, attempt.requested_at)
            heapq.heappush(self._pending, item)
        return outcome, facts

    def _count(self, facts: Facts, aggregates: dict[str, float]) -> Attempt:
        """Count the attempt under the candidate's keys, then read each spec's window into
        `aggregates` (what `Aggregator.observe` does, without a query object per window)."""
        values = {key: key.value(facts) for key in self._keys}
        keys = {key for key in values.values() if key is not None}
        held = {key for key in (values[k] for k in self._held) if key is not None}
        clock, spend = self.counters.clock, to_micros(facts.price_amount)
        attempt = Attempt.of(keys, held, clock=clock, now=facts.now, spend=spend)
        self.counters.apply_now(attempt.counted())
        total, current = self.counters.total, attempt.bucket
        for spec_id, counter_key, query in self._reads:
            key = values[counter_key]
            if key is not None:
                read = value(query, total(key, query.window_seconds, query.measure, current))
                aggregates[spec_id] = without_own(query, read, spend)
        return attempt

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

    def verified(self, key: str, window_seconds: int, now: datetime) -> float:
        """Successes under a counter key over a window as of `now`, from the replayed history
        (what a baseline of verified counts reads live)."""
        query = WindowQuery(key, window_seconds, "successes")
        totals = self.counters.read_now(Reads([query], now))
        return value(query, totals[query])

    def prune(self, now: datetime) -> None:
        """Forget buckets no window can read any more (memory stays flat over a long replay);
        at most once per retention period."""
        current = self.counters.clock.bucket(now)
        if self._pruned_at is None:
            self._pruned_at = current
        elif current - self._pruned_at >= self._retention:
            self.counters.forget_before(current - self._retention)
            self._pruned_at = current

    def arrive(self, now: datetime) -> None:
        """Credit every success whose result had arrived by `now`."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, keys, requested_at = heapq.heappop(pending)
            change = succeeded(set(keys), clock=self.counters.clock, requested_at=requested_at)
            self.counters.apply_now((change,))
