"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 07:53:50.350932
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("token_name", sa.String(length=100), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("query", sa.JSON(), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "callbacks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("app_key", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=64), nullable=True),
        sa.Column("verification_id", sa.String(length=128), nullable=True),
        sa.Column("dedupe_key", sa.String(length=256), nullable=True),
        sa.Column("signature", sa.String(length=32), nullable=False),
        sa.Column("http_status", sa.SmallInteger(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_callbacks_dedupe_key")),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callbacks_verification_id"), ["verification_id"], unique=False
        )

    op.create_table(
        "counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("bucket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("allowed", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("spend_micros", sa.BigInteger(), nullable=False),
        sa.Column("allowed_spend_micros", sa.BigInteger(), nullable=False),
        sa.Column("pending_spend_micros", sa.BigInteger(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "bucket", name=op.f("pk_counters")),
    )
    with op.batch_alter_table("counters", schema=None) as batch_op:
        batch_op.create_index("ix_counters_bucket", ["bucket"], unique=False)

    op.create_table(
        "lists",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_lists_name")),
    )
    op.create_table(
        "policy_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("default_action", sa.String(length=8), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_state")),
    )
    op.execute(
        sa.text(
            "INSERT INTO policy_state (id, version, default_action, updated_at, updated_by) "
            "VALUES (1, 0, NULL, CURRENT_TIMESTAMP, 'migration')"
        )
    )
    op.create_table(
        "rule_revisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("rule_name", sa.String(length=100), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_revisions")),
        sa.UniqueConstraint("rule_id", "revision", name=op.f("uq_rule_revisions_rule_id_revision")),
    )
    op.create_table(
        "rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_rules_name")),
    )
    op.create_table(
        "verification_matches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("verification_id", sa.String(length=128), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("rule_name", sa.String(length=100), nullable=False),
        sa.Column("rule_revision", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_matches")),
    )
    with op.batch_alter_table("verification_matches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_verification_matches_rule_name_matched_at",
            ["rule_name", "matched_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_verification_matches_verification_id"), ["verification_id"], unique=False
        )

    op.create_table(
        "verifications",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("app_key", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("number", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("calling_code", sa.Integer(), nullable=True),
        sa.Column("number_type", sa.String(length=32), nullable=True),
        sa.Column("number_valid", sa.Boolean(), nullable=True),
        sa.Column("price_amount", sa.Float(), nullable=True),
        sa.Column("price_currency", sa.String(length=8), nullable=True),
        sa.Column("rate_amount", sa.Float(), nullable=True),
        sa.Column("rate_currency", sa.String(length=8), nullable=True),
        sa.Column("reference", sa.String(length=1024), nullable=True),
        sa.Column("custom", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "request_callback_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("decided_by", sa.String(length=16), nullable=True),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("rule_name", sa.String(length=100), nullable=True),
        sa.Column("rule_revision", sa.Integer(), nullable=True),
        sa.Column("shadow_deny", sa.Boolean(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_ms", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("status_reason", sa.String(length=256), nullable=True),
        sa.Column("status_source", sa.String(length=256), nullable=True),
        sa.Column("result_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sms_result", sa.String(length=64), nullable=True),
        sa.Column("sms_delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
    )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_verifications_country_requested_at", ["country", "requested_at"], unique=False
        )
        batch_op.create_index(
            "ix_verifications_number_requested_at", ["number", "requested_at"], unique=False
        )
        batch_op.create_index(
            "ix_verifications_reason_requested_at", ["reason", "requested_at"], unique=False
        )
        batch_op.create_index("ix_verifications_reference", ["reference"], unique=False)
        batch_op.create_index(
            "ix_verifications_requested_at_id",
            ["requested_at", "id"],
            unique=False,
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
        )
        batch_op.create_index(
            "ix_verifications_rule_name_requested_at", ["rule_name", "requested_at"], unique=False
        )
        batch_op.create_index(
            "ix_verifications_status_requested_at", ["status", "requested_at"], unique=False
        )

    op.create_table(
        "list_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["lists.id"],
            name=op.f("fk_list_entries_list_id_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_entries")),
        sa.UniqueConstraint("list_id", "value", name=op.f("uq_list_entries_list_id_value")),
    )


def downgrade() -> None:
    op.drop_table("list_entries")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verifications_status_requested_at")
        batch_op.drop_index("ix_verifications_rule_name_requested_at")
        batch_op.drop_index(
            "ix_verifications_requested_at_id",
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
        )
        batch_op.drop_index("ix_verifications_reference")
        batch_op.drop_index("ix_verifications_reason_requested_at")
        batch_op.drop_index("ix_verifications_number_requested_at")
        batch_op.drop_index("ix_verifications_country_requested_at")

    op.drop_table("verifications")
    with op.batch_alter_table("verification_matches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verification_matches_verification_id"))
        batch_op.drop_index("ix_verification_matches_rule_name_matched_at")

    op.drop_table("verification_matches")
    op.drop_table("rules")
    op.drop_table("rule_revisions")
    op.drop_table("policy_state")
    op.drop_table("lists")
    with op.batch_alter_table("counters", schema=None) as batch_op:
        batch_op.drop_index("ix_counters_bucket")

    op.drop_table("counters")
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callbacks_verification_id"))

    op.drop_table("callbacks")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    op.drop_table("api_tokens")
