"""Prometheus metrics, all prefixed `verifyguard_`; label values come from small closed sets.

Each app owns a `Metrics` (built by its composition root) on a registry of its own, so two
apps in one process count separately. Rule names are the one label an admin chooses; a
policy holds tens of rules, not thousands.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from app.gc_settings import PauseCollector

DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.5)


class Metrics:
    """One app's metrics, and the registry `/metrics` renders."""

    def __init__(self) -> None:
        # The collectors the client's default registry holds, in its order.
        self.registry = registry = CollectorRegistry()
        GCCollector(registry=registry)
        PauseCollector(registry)  # each collection's pause, by generation
        PlatformCollector(registry=registry)
        ProcessCollector(registry=registry)
        self.callbacks = Counter(
            "verifyguard_callbacks",
            "Callbacks received, by event type and outcome.",
            ["event", "outcome"],
            registry=registry,
        )
        self.decisions = Counter(
            "verifyguard_decisions",
            "Request events decided, by answer, reason code, deciding rule and what decided.",
            ["action", "reason", "rule", "mode"],
            registry=registry,
        )
        self.signature_failures = Counter(
            "verifyguard_signature_failures",
            "Callbacks rejected before anything was decided, by cause.",
            ["cause"],
            registry=registry,
        )
        self.decision_seconds = Histogram(
            "verifyguard_decision_seconds",
            "Time from receiving a request event to its answer being ready.",
            buckets=DECISION_BUCKETS,
            registry=registry,
        )
        self.outcome_batch_size = Histogram(
            "verifyguard_outcome_batch_size",
            "Results and SMS receipts stored together in one transaction (PostgreSQL).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.batch_size = Histogram(
            "verifyguard_decision_batch_size",
            "Request events decided together in one transaction (SQLite group commit; "
            "PostgreSQL: stored by one statement).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )
        self.count_batch_size = Histogram(
            "verifyguard_count_batch_size",
            "Request events counted together by one statement (PostgreSQL group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.version_misses = Counter(
            "verifyguard_policy_version_misses",
            "Request events whose count in Redis found the policy's version there other than "
            "the compiled one's (they share one load of the policy at that version), or none "
            "(each reads the version from the database).",
            registry=registry,
        )
        self.policy_loads = Counter(
            "verifyguard_policy_loads",
            "Policies loaded from the database and compiled: one per policy change and process, "
            "shared by the requests in flight when it changed.",
            registry=registry,
        )
        self._outage_metrics(registry)
        self._spool_metrics(registry)
        self.retention_rows = Counter(
            "verifyguard_retention_rows",
            "Rows deleted or anonymised by retention, by table and action.",
            ["table", "action"],
            registry=registry,
        )
        self._alert_metrics(registry)
        self.database_up.set(1)

    def _alert_metrics(self, registry: CollectorRegistry) -> None:
        self.alerts_firing = Gauge(
            "verifyguard_alerts_firing",
            "Alert keys firing at the last evaluation (set by the process evaluating).",
            registry=registry,
        )
        self.alert_transitions = Counter(
            "verifyguard_alert_transitions",
            "Alerts fired and resolved by this process, by kind.",
            ["kind"],
            registry=registry,
        )
        self.containments_active = Gauge(
            "verifyguard_containments_active",
            "Active containments this process denies request events under.",
            registry=registry,
        )
        self.notifications = Counter(
            "verifyguard_notifications",
            "Notification delivery attempts, by channel kind and outcome "
            "(delivered, retry, failed).",
            ["channel", "outcome"],
            registry=registry,
        )

    def _outage_metrics(self, registry: CollectorRegistry) -> None:
        self.fallbacks = Counter(
            "verifyguard_fallback_answers",
            "Request events answered with the configured fallback action, by cause.",
            ["cause"],
            registry=registry,
        )
        self.degraded = Counter(
            "verifyguard_degraded_decisions",
            "Request events decided without the database (in-memory policy, local counters).",
            registry=registry,
        )
        self.database_errors = Counter(
            "verifyguard_database_errors",
            "Failures to reach or use the database, by operation.",
            ["operation"],
            registry=registry,
        )
        self.database_up = Gauge(
            "verifyguard_database_up",
            "1 while the database answers, 0 while VerifyGuard runs on its spool.",
            registry=registry,
        )

    def _spool_metrics(self, registry: CollectorRegistry) -> None:
        self.spool_depth = Gauge(
            "verifyguard_spool_depth",
            "Entries in the local spool waiting to be written to the database.",
            registry=registry,
        )
        self.admission_shed_share = Gauge(
            "verifyguard_admission_shed_share",
            "The share of request events admission's gate sheds now (0 to 0.95): it grows"
            " while the event loop and the decisions wait past their target.",
            registry=registry,
        )
        self.event_loop_lag = Gauge(
            "verifyguard_event_loop_lag_seconds",
            "How late the event loop runs what falls due, the least of its last turns while"
            " request events arrive: about how long a request waits unread.",
            registry=registry,
        )
        self.spool_writes = Counter(
            "verifyguard_spool_writes",
            "Entries written to the local spool, by kind.",
            ["kind"],
            registry=registry,
        )
        self.spool_replayed = Counter(
            "verifyguard_spool_replayed",
            "Spool entries written to the database, by kind and outcome (stored or duplicate).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.spool_parked = Counter(
            "verifyguard_spool_parked",
            "Spool entries that kept failing to replay, set aside in the spool's dead table.",
            registry=registry,
        )

    def render(self) -> bytes:
        """The Prometheus text format of this app's registry."""
        return generate_latest(self.registry)


def rule_label(rule: str | None) -> str:
    return rule or "none"
