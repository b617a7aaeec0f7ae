"""Tables: the callback inbox, verifications, counters, policy (rules, lists), tokens, audit log;
alert state, history, containments, the notification outbox and job leases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.store.base import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")


def _time_index(name: str, column: str) -> Index:
    """An index on a time rows are inserted in order of: on PostgreSQL a block-range (BRIN)
    index, one entry per 128 pages, each new range summarised by autovacuum once filled."""
    return Index(name, column, postgresql_using="brin", postgresql_with={"autosummarize": "on"})


def _present(name: str, column: str, *more: str) -> Index:
    """An index of the rows where `column` is set (migration 0014): its readers only ask for
    a value (`column = …` implies the predicate), so a row without one writes no entry."""
    where = text(f"{column} IS NOT NULL")
    return Index(name, column, *more, postgresql_where=where, sqlite_where=where)


def only_on(dialect: str, item: Index | UniqueConstraint) -> Any:
    """`item` created on `dialect` only, and compared by autogenerate there only
    (`compared_here`)."""
    item.info["dialect"] = dialect
    return item.ddl_if(dialect=dialect)


def compared_here(dialect: str) -> Any:
    """Autogenerate's `include_object` for a database of `dialect`: leaves out what
    `only_on` gave another dialect."""

    def include(item: Any, _name: str | None, _type: str, reflected: bool, _other: Any) -> bool:
        info = getattr(item, "info", None) or {}
        return reflected or info.get("dialect", dialect) == dialect

    return include


# What an inbox row's dedupe key is unique on (migration 0013): on PostgreSQL the key's MD5
# as a uuid, 16 bytes in its index against ~100 for the key (a third of the leaf pages that
# random-order inserts dirty, each written whole after every checkpoint); the column keeps
# the whole key. Statements claim by ON CONFLICT on the expression (`DEDUPE_CONFLICT_PG`);
# a collision of two keys' 128 bits would take the second for a redelivery.
DEDUPE_DIGEST_PG = "(md5(dedupe_key)::uuid)"
DEDUPE_CONFLICT_PG = f"({DEDUPE_DIGEST_PG})"


class CallbackRow(Base):
    """The inbox: every POST to the callback path, signed or not, exactly as received."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime]
    app_key: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str | None] = mapped_column(String(64))
    verification_id: Mapped[str | None] = mapped_column(String(128), index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(256))
    signature: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int] = mapped_column(SmallInteger)
    error_code: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(255))
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        # Retention's `received_at < …` (migration 0010): a block-range index on PostgreSQL.
        _time_index("ix_callbacks_received_at_brin", "received_at"),
        # Migration 0013: on PostgreSQL unique on the key's digest, the key itself elsewhere.
        only_on(
            "postgresql",
            Index("uq_callbacks_dedupe_digest", text(DEDUPE_DIGEST_PG), unique=True),
        ),
        only_on("sqlite", UniqueConstraint("dedupe_key", name="uq_callbacks_dedupe_key")),
    )


class VerificationRow(Base):
    """One Sinch verification: the request, our decision, and how it ended.

    On PostgreSQL its pages are filled to 75 % (migration 0013): a receipt's update, which
    changes no indexed column, finds room on its row's page and writes no index entry."""

    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    app_key: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(32))
    number: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    calling_code: Mapped[int | None] = mapped_column(Integer)
    number_type: Mapped[str | None] = mapped_column(String(32))
    number_valid: Mapped[bool | None] = mapped_column(Boolean)
    price_amount: Mapped[float | None] = mapped_column(Float)
    price_currency: Mapped[str | None] = mapped_column(String(8))
    rate_amount: Mapped[float | None] = mapped_column(Float)
    rate_currency: Mapped[str | None] = mapped_column(String(8))
    reference: Mapped[str | None] = mapped_column(String(1024))
    custom: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime | None]
    request_callback_id: Mapped[int | None] = mapped_column(BigId)
    action: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(16))
    rule_id: Mapped[int | None] = mapped_column(Integer)
    rule_name: Mapped[str | None] = mapped_column(String(100))
    rule_revision: Mapped[int | None] = mapped_column(Integer)
    shadow_deny: Mapped[bool] = mapped_column(Boolean, default=False)
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    # TOAST-compressed with lz4 on PostgreSQL where the server has it (migration 0008: the
    # ~7 kB document cost the database ~60 µs to store with the default pglz, ~15 µs with lz4)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    decided_at: Mapped[datetime | None]
    decision_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str | None] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(String(256))
    status_source: Mapped[str | None] = mapped_column(String(256))
    result_at: Mapped[datetime | None]
    sms_result: Mapped[str | None] = mapped_column(String(64))
    sms_delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        # Search pages and stats scan a time range; on PostgreSQL the covering columns
        # let stats read the index alone.
        Index(
            "ix_verifications_requested_at_id",
            "requested_at",
            "id",
            postgresql_include=[
                "action",
                "status",
                "shadow_deny",
                "price_amount",
                "price_currency",
                "country",
                "method",
                "reason",
                "rule_name",
                "decided_by",
                "number",
            ],
        ),
        Index("ix_verifications_status_requested_at", "status", "requested_at"),
        Index("ix_verifications_reason_requested_at", "reason", "requested_at"),
        Index("ix_verifications_number_requested_at", "number", "requested_at"),
        _present("ix_verifications_reference", "reference"),
        Index("ix_verifications_country_requested_at", "country", "requested_at"),
        _present("ix_verifications_rule_name_requested_at", "rule_name", "requested_at"),
        # Retention's `created_at < …` (migration 0010).
        _time_index("ix_verifications_created_at_brin", "created_at"),
        # The top denied number ranges read the denied rows alone (a small share).
        Index(
            "ix_verifications_denied_requested_at",
            "requested_at",
            postgresql_include=[
                "number",
                "app_key",
                "country",
                "method",
                "reason",
                "rule_name",
                "decided_by",
                "status",
            ],
            postgresql_where=text("action = 'deny'"),
            sqlite_where=text("action = 'deny'"),
        ),
    )


class VerificationMatchRow(Base):
    """Shadow rules that would have matched a verification ("would-have" matches)."""

    __tablename__ = "verification_matches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    verification_id: Mapped[str] = mapped_column(String(128), index=True)
    rule_id: Mapped[int | None] = mapped_column(Integer)
    rule_name: Mapped[str] = mapped_column(String(100))
    rule_revision: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    matched_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_verification_matches_rule_name_matched_at", "rule_name", "matched_at"),
    )


class _HourDimensions:
    """The columns both rollups group by: the hour, then what a stats filter can name."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(index=True)
    app_key: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    method: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(64))
    rule_name: Mapped[str | None] = mapped_column(String(100))
    decided_by: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(32))
    price_currency: Mapped[str | None] = mapped_column(String(8))


class _Measures:
    """The counts and spend a stats rollup holds for its cell."""

    attempts: Mapped[int] = mapped_column(Integer)
    allowed: Mapped[int] = mapped_column(Integer)
    denied: Mapped[int] = mapped_column(Integer)
    shadow_would_deny: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer)
    successful: Mapped[int] = mapped_column(Integer)
    spend_allowed: Mapped[float | None] = mapped_column(Float)
    spend_denied: Mapped[float | None] = mapped_column(Float)


class StatsHourRow(_HourDimensions, _Measures, Base):
    """Audit statistics rolled up per hour and dimension, for windows too long to scan.

    Rows are derived from `verifications` (see app/store/stats_rollup.py); an hour is rolled
    once it is settled, and rolled again when a late write marks it dirty.
    """

    __tablename__ = "stats_hourly"


class StatsCountryHourRow(_Measures, Base):
    """`stats_hourly` summed per hour, country and currency: a few rows per hour, what
    unfiltered or per-country stats (the console's overview) read. Rolled with it."""

    __tablename__ = "stats_country_hourly"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(index=True)
    country: Mapped[str | None] = mapped_column(String(2))
    price_currency: Mapped[str | None] = mapped_column(String(8))


class StatsRangeHourRow(Base):
    """Denied attempts per hour, country and number range (`+` and its first 6 digits): the
    top denied ranges of long windows without reading every denied row. Rolled with
    `stats_hourly`."""

    __tablename__ = "stats_range_hourly"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(index=True)
    country: Mapped[str | None] = mapped_column(String(2))
    range: Mapped[str] = mapped_column(String(16))
    denied: Mapped[int] = mapped_column(Integer)


class StatsShadowHourRow(_HourDimensions, Base):
    """Shadow-rule matches rolled up per hour, shadow rule and dimension (see StatsHourRow)."""

    __tablename__ = "stats_shadow_hourly"

    shadow_rule: Mapped[str] = mapped_column(String(100))
    matches: Mapped[int] = mapped_column(Integer)
    would_deny: Mapped[int] = mapped_column(Integer)
    would_deny_allowed: Mapped[int] = mapped_column(Integer)
    would_deny_successful: Mapped[int] = mapped_column(Integer)
    spend_would_save: Mapped[float | None] = mapped_column(Float)


class StatsHourStateRow(Base):
    """Which hours `stats_hourly` holds, and which a late write made stale (dirty); `version`
    counts the late writes (what rolling an hour apart from the writer compares)."""

    __tablename__ = "stats_hours"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    dirty: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))

    __table_args__ = (
        Index(
            "ix_stats_hours_dirty",
            "hour",
            postgresql_where=text("dirty"),
            sqlite_where=text("dirty"),
        ),
    )


class _CounterValues:
    """The value columns a counter bucket and an hour total share (mixed in after the key)."""

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    allowed: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    spend_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    allowed_spend_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_spend_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    successes: Mapped[int] = mapped_column(Integer, default=0)


class CounterRow(Base, _CounterValues):
    """Velocity and conversion counters: one row per counter key and time bucket."""

    __tablename__ = "counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)

    # Retention's `bucket < …` only (windows read by the primary key): BRIN (migration 0011).
    __table_args__ = (_time_index("ix_counters_bucket", "bucket"),)


class CounterHourRow(Base, _CounterValues):
    """Per counter key and hour, what windows read of its `counters` rows whose bucket starts
    in that hour (`hour` = bucket - bucket % 3600): each measure's sum, pending folded into
    allowed (store/hour_triggers.py); a window reads its whole hours here and only its edges
    from the buckets. Kept by triggers on `counters` (migrations 0007, 0009), so every writer
    of a bucket (count, settle, success) keeps its hour in step in the same statement."""

    __tablename__ = "counter_hours"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)

    # Retention's `hour <= …` only: BRIN (migration 0011).
    __table_args__ = (_time_index("ix_counter_hours_hour", "hour"),)


class RuleRow(Base):
    __tablename__ = "rules"
    # Never reuse an id on SQLite either: revisions outlive a deleted rule.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    priority: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(100))


class RuleRevisionRow(Base):
    """Immutable history of every rule change (kept after the rule is deleted)."""

    __tablename__ = "rule_revisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(Integer)
    rule_name: Mapped[str] = mapped_column(String(100))
    revision: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(100))
    token_id: Mapped[int | None] = mapped_column(Integer)
    changed_at: Mapped[datetime]
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (UniqueConstraint("rule_id", "revision"),)


class ListRow(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class ListEntryRow(Base):
    __tablename__ = "list_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(500), default="")
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (UniqueConstraint("list_id", "value"),)


class PolicyStateRow(Base):
    """A single row whose version is bumped by every policy change; workers reload on change."""

    __tablename__ = "policy_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    default_action: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(100))
    # The policy's channels, alerts and never_contain lists, as one document.
    alerting: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AuditLogRow(Base):
    """Who asked what of the audit and admin APIs."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    token_id: Mapped[int | None] = mapped_column(Integer)
    token_name: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    query: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[int] = mapped_column(SmallInteger)


class AlertStateRow(Base):
    """Where one key of one alert stands: firing or not, when it last fired."""

    __tablename__ = "alert_states"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(String(64))
    firing: Mapped[bool] = mapped_column(Boolean)
    last_fired_at: Mapped[datetime | None]
    below_since: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("alert", "value"),)


class AlertEventRow(Base):
    """Alert history: every firing and resolution, with what was observed against what."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    alert: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(16))
    observed: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    window: Mapped[str] = mapped_column(String(16))
    containment_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (Index("ix_alert_events_alert_at", "alert", "at"),)


class ContainmentRow(Base):
    """A timed block of one key, created by an alert (or proposed for review)."""

    __tablename__ = "containments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(64))
    alert: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), index=True)
    duration_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime | None]
    approved_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(100))
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(100))
    extended_at: Mapped[datetime | None]
    extended_by: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_containments_key_value_created_at", "key", "value", "created_at"),
        {"sqlite_autoincrement": True},
    )


class NotificationRow(Base):
    """The outbox: one notification for one channel, written with the event that causes it."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_notifications_next_attempt_at", "next_attempt_at"),)


class NotificationAttemptRow(Base):
    """Each delivery attempt of a notification, answered or not."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(BigId, index=True)
    at: Mapped[datetime]
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(String(500))
    elapsed_ms: Mapped[float] = mapped_column(Float)


class JobLeaseRow(Base):
    """Which process runs a cluster-wide job (alert evaluation) until when."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class BacktestRow(Base):
    """A backtest of a candidate policy over stored history: its request, progress and result.

    At most one row is `running` at a time, across every worker and host: a partial unique
    index says so, and the runner renews `lease_expires_at` while it works (a row whose lease
    ran out lost its runner).
    """

    __tablename__ = "backtests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    since: Mapped[datetime]
    until: Mapped[datetime]
    bucket_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "ux_backtests_one_running",
            "status",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index("ix_backtests_created_at", "created_at"),
    )
