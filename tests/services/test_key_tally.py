"""KeyTally: the same counts as a dictionary, keys counting one kept as hashes."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from app.rules.aggregates import BaselineSpec
from app.services.key_tally import KeyTally
from app.services.verified_counts import VerifiedCounts


def _key(n: int) -> str:
    return f"range3:+4670{n:07d}"


@pytest.mark.parametrize("seed", range(5))
def test_counts_and_keys_above_match_a_dictionary(seed: int) -> None:
    rng = random.Random(seed)
    tally, reference = KeyTally(), dict[str, int]()
    for _ in range(60):
        deltas: dict[str, int] = {}
        for _ in range(rng.randrange(1, 80)):
            key = _key(rng.randrange(300))
            known = reference.get(key, 0) + deltas.get(key, 0)
            # Successes leave only as they came: never below zero.
            deltas[key] = deltas.get(key, 0) + rng.choice([1, 1, 2, -1 if known > 0 else 1])
        tally.apply(deltas)
        for key, delta in deltas.items():
            value = reference.get(key, 0) + delta
            if value > 0:
                reference[key] = value
            else:
                reference.pop(key, None)
        assert len(tally) == len(reference)
        for n in range(300):
            assert tally.count(_key(n)) == reference.get(_key(n), 0), _key(n)
        for threshold in (1, 2, 3.5):
            assert tally.above(threshold) == {k: v for k, v in reference.items() if v > threshold}


def test_a_key_moves_between_one_and_many_and_out() -> None:
    tally = KeyTally({"a": 1, "b": 3})
    assert (tally.count("a"), tally.count("b"), tally.count("c")) == (1, 3, 0)
    tally.apply({"a": 1, "b": -2, "c": 1})
    assert (tally.count("a"), tally.count("b"), tally.count("c")) == (2, 1, 1)
    tally.apply({"a": -2, "b": -1, "c": 0})
    assert (tally.count("a"), tally.count("b"), tally.count("c"), len(tally)) == (0, 0, 1, 1)
    assert tally.above(1) == {}
    with pytest.raises(ValueError, match="two or more"):
        tally.above(0)


def _kept_bytes(compact: bool, keys: int) -> int:
    """Memory a baseline's counts keep for `keys` keys with one success each, after the
    full read's own rows are gone."""
    spec = BaselineSpec(key="range", digits=-3, window_seconds=14 * 86400, same_hour_days=None)
    counts = VerifiedCounts(spec, compact=compact)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rows = {_key(n): 1 for n in range(keys)}  # what verified_counts returns
        counts.totals = KeyTally(rows) if compact else rows
        del rows
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_keys_counting_one_cost_a_hash_not_a_string() -> None:
    keys = 50_000
    compact = _kept_bytes(True, keys)
    plain = _kept_bytes(False, keys)
    # 8 bytes a key in the array (the dictionary: ~100 bytes, its key strings included).
    assert compact < 12 * keys, compact / keys
    assert plain > 60 * keys, plain / keys
