"""Prometheus metrics, all prefixed `verifyguard_`; label values come from small closed sets.

Rule names are the one label an admin chooses; a policy holds tens of rules, not thousands.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLBACKS = Counter(
    "verifyguard_callbacks",
    "Callbacks received, by event type and outcome.",
    ["event", "outcome"],
)
DECISIONS = Counter(
    "verifyguard_decisions",
    "Request events decided, by answer, reason code, deciding rule and what decided.",
    ["action", "reason", "rule", "mode"],
)
SIGNATURE_FAILURES = Counter(
    "verifyguard_signature_failures",
    "Callbacks rejected before anything was decided, by cause.",
    ["cause"],
)
DECISION_SECONDS = Histogram(
    "verifyguard_decision_seconds",
    "Time from receiving a request event to its answer being ready.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.5),
)
FALLBACKS = Counter(
    "verifyguard_fallback_answers",
    "Request events answered with the configured fallback action, by cause.",
    ["cause"],
)
DEGRADED = Counter(
    "verifyguard_degraded_decisions",
    "Request events decided without the database (in-memory policy, local counters).",
)
DATABASE_ERRORS = Counter(
    "verifyguard_database_errors",
    "Failures to reach or use the database, by operation.",
    ["operation"],
)
DATABASE_UP = Gauge(
    "verifyguard_database_up",
    "1 while the database answers, 0 while VerifyGuard runs on its spool.",
)
SPOOL_DEPTH = Gauge(
    "verifyguard_spool_depth",
    "Entries in the local spool waiting to be written to the database.",
)
SPOOL_WRITES = Counter(
    "verifyguard_spool_writes",
    "Entries written to the local spool, by kind.",
    ["kind"],
)
SPOOL_REPLAYED = Counter(
    "verifyguard_spool_replayed",
    "Spool entries written to the database, by kind and outcome (stored or duplicate).",
    ["kind", "outcome"],
)
SPOOL_PARKED = Counter(
    "verifyguard_spool_parked",
    "Spool entries that kept failing to replay, set aside in the spool's dead table.",
)
RETENTION_ROWS = Counter(
    "verifyguard_retention_rows",
    "Rows deleted or anonymised by retention, by table and action.",
    ["table", "action"],
)

DATABASE_UP.set(1)


def rule_label(rule: str | None) -> str:
    return rule or "none"
