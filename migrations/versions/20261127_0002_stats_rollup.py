"""hourly stats rollup and denied index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:33:27.503522
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DENIED_INCLUDE = [
    "number",
    "app_key",
    "country",
    "method",
    "reason",
    "rule_name",
    "decided_by",
    "status",
]


def upgrade() -> None:
    op.create_table(
        "stats_hourly",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("app_key", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("rule_name", sa.String(length=100), nullable=True),
        sa.Column("decided_by", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("price_currency", sa.String(length=8), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("allowed", sa.Integer(), nullable=False),
        sa.Column("denied", sa.Integer(), nullable=False),
        sa.Column("shadow_would_deny", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("successful", sa.Integer(), nullable=False),
        sa.Column("spend_allowed", sa.Float(), nullable=True),
        sa.Column("spend_denied", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_hourly")),
    )
    op.create_index(op.f("ix_stats_hourly_hour"), "stats_hourly", ["hour"], unique=False)
    op.create_table(
        "stats_shadow_hourly",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shadow_rule", sa.String(length=100), nullable=False),
        sa.Column("app_key", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("rule_name", sa.String(length=100), nullable=True),
        sa.Column("decided_by", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("price_currency", sa.String(length=8), nullable=True),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("would_deny", sa.Integer(), nullable=False),
        sa.Column("would_deny_allowed", sa.Integer(), nullable=False),
        sa.Column("would_deny_successful", sa.Integer(), nullable=False),
        sa.Column("spend_would_save", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_shadow_hourly")),
    )
    op.create_index(
        op.f("ix_stats_shadow_hourly_hour"), "stats_shadow_hourly", ["hour"], unique=False
    )
    op.create_table(
        "stats_hours",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("hour", name=op.f("pk_stats_hours")),
    )
    op.create_index(
        "ix_stats_hours_dirty",
        "stats_hours",
        ["hour"],
        unique=False,
        postgresql_where=sa.text("dirty"),
        sqlite_where=sa.text("dirty"),
    )
    # verifications is large and written on every callback: on PostgreSQL build the index
    # without blocking writes (CONCURRENTLY cannot run inside a transaction).
    concurrently = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_verifications_denied_requested_at",
            "verifications",
            ["requested_at"],
            unique=False,
            postgresql_include=DENIED_INCLUDE,
            postgresql_where=sa.text("action = 'deny'"),
            sqlite_where=sa.text("action = 'deny'"),
            postgresql_concurrently=concurrently,
        )


def downgrade() -> None:
    op.drop_index("ix_verifications_denied_requested_at", table_name="verifications")
    op.drop_index("ix_stats_hours_dirty", table_name="stats_hours")
    op.drop_table("stats_hours")
    op.drop_index(op.f("ix_stats_shadow_hourly_hour"), table_name="stats_shadow_hourly")
    op.drop_table("stats_shadow_hourly")
    op.drop_index(op.f("ix_stats_hourly_hour"), table_name="stats_hourly")
    op.drop_table("stats_hourly")
