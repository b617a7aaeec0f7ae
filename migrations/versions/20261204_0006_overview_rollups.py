"""hourly rollups by country and by denied range

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 12:40:00

Two narrow rollups beside `stats_hourly`, rolled with it (app/store/stats_rollup.py):
per hour, country and currency; and denied attempts per hour, country and 6-digit range.
Every hour rolled so far is marked dirty, so the next roll (the server's roller,
`verifyguard audit rollup`, or the first stats query) fills them for the past as well.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stats_country_hourly",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("price_currency", sa.String(length=8), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("allowed", sa.Integer(), nullable=False),
        sa.Column("denied", sa.Integer(), nullable=False),
        sa.Column("shadow_would_deny", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("successful", sa.Integer(), nullable=False),
        sa.Column("spend_allowed", sa.Float(), nullable=True),
        sa.Column("spend_denied", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_country_hourly")),
    )
    op.create_index(
        op.f("ix_stats_country_hourly_hour"), "stats_country_hourly", ["hour"], unique=False
    )
    op.create_table(
        "stats_range_hourly",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("range", sa.String(length=16), nullable=False),
        sa.Column("denied", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_range_hourly")),
    )
    op.create_index(
        op.f("ix_stats_range_hourly_hour"), "stats_range_hourly", ["hour"], unique=False
    )
    # Backfill: the hours rolled before these tables existed are rolled again, all four
    # tables at once, by the next refresh.
    op.execute(sa.text("UPDATE stats_hours SET dirty = true"))


def downgrade() -> None:
    op.drop_index(op.f("ix_stats_range_hourly_hour"), table_name="stats_range_hourly")
    op.drop_table("stats_range_hourly")
    op.drop_index(op.f("ix_stats_country_hourly_hour"), table_name="stats_country_hourly")
    op.drop_table("stats_country_hourly")
