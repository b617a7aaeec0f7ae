"""The counters the request path counts in dicts (`Counts`) scrape as prometheus_client's own
`Counter` does: the same families, samples and values; each label set's `_created` is when
it was first counted."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.metrics import Counts, Metrics, Seconds

LABELS = ("action", "reason", "rule", "mode")
COUNTED = [
    ("allow", "default", "none", "default"),
    ("deny", 'a "quoted" \\ reason\nwith a line', "velocity-number", "enforce"),
    ("allow", "default", "none", "default"),
    ("deny", "ünïcode", "räkna", "enforce"),
]


def _without_created_values(text: bytes) -> str:
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", text.decode())


def test_counts_scrape_as_a_client_counter() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("verifyguard_decisions", "Decided.", LABELS, registry=theirs)
    counts = Counts("verifyguard_decisions", "Decided.", LABELS)
    ours.register(counts)
    assert generate_latest(ours) == generate_latest(theirs)  # nothing counted yet
    for values in COUNTED:
        counter.labels(*values).inc()
        counts.inc(values)
    expected = _without_created_values(generate_latest(theirs))
    assert _without_created_values(generate_latest(ours)) == expected
    assert "_created{" in expected and counts.value(COUNTED[0]) == 2


def test_an_apps_request_counters_are_registered_once() -> None:
    metrics = Metrics()
    metrics.callbacks.inc(("request", "decided"))
    text = metrics.render().decode()
    assert 'verifyguard_callbacks_total{event="request",outcome="decided"} 1.0' in text
    assert "# TYPE verifyguard_decisions_total counter" in text
    assert text.count("# HELP verifyguard_callbacks_total ") == 1


def test_seconds_scrape_as_a_client_histogram() -> None:
    buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.5)
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("verifyguard_decision_seconds", "Took.", buckets=buckets, registry=theirs)
    seconds = Seconds("verifyguard_decision_seconds", "Took.", buckets)
    ours.register(seconds)
    assert _without_created_values(generate_latest(ours)) == _without_created_values(
        generate_latest(theirs)
    )
    # On a bound (the bucket holds it), between bounds, past the last one, zero, negative.
    for value in (0.001, 0.0011, 0.003, 0.3, 2.5, 2.6, 40.0, 0.0, -0.5, 1e-9):
        histogram.observe(value)
        seconds.observe(value)
    expected = _without_created_values(generate_latest(theirs))
    assert _without_created_values(generate_latest(ours)) == expected
    assert "verifyguard_decision_seconds_created " in expected
