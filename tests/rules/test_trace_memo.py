"""Condition nodes reuse a trace record built for the same value read (nodes.py): a reused
record is always the one a fresh evaluation builds for the value at hand, never another
value's (1, 1.0 and True; 0, 0.0 and -0.0; None; every node kind of the starter policy)."""

from __future__ import annotations

import random

from app.rules.engine import compile_policy, evaluate
from app.rules.facts import Facts
from app.rules.starter import starter_policy

from .factories import make_facts, spec_ids

# Values alike as keys (1 == 1.0 == True, 0.0 == -0.0) but not as trace text or JSON.
ALIKE = [1, 1.0, True, 0, 0.0, -0.0, False, None, 2, 2.0, 3, 21, 20.0, 0.2, 0.5, 0.25]


def _facts(rnd: random.Random, spec_ids: list[str]) -> Facts:
    aggregates = {spec: rnd.choice(ALIKE) for spec in spec_ids if rnd.random() < 0.9}
    return make_facts(
        price_amount=rnd.choice(ALIKE),
        number_type=rnd.choice(["mobile", "premium_rate", None, "", "''", "None"]),
        valid=rnd.choice([True, False, 1, 0]),
        aggregates={k: v for k, v in aggregates.items() if v is not None},
    )


def test_reused_trace_records_are_the_ones_built_for_the_value_read() -> None:
    policy = starter_policy()
    reused = compile_policy(policy, version=1)
    ids = spec_ids(reused)
    rnd = random.Random(5)
    for _ in range(600):  # past the memo's 256 records a node, so it starts over too
        facts = _facts(rnd, ids)
        fresh = compile_policy(policy, version=1)  # nothing to reuse
        assert evaluate(reused, facts).model_dump_json() == evaluate(fresh, facts).model_dump_json()
