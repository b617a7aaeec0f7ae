"""stats_hours.version: a late write's count, for rolling an hour apart from the writer

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-11 09:00:00

Rolling a settled hour (app/store/stats_rollup_apart.py) now reads its aggregates on a
reader's connection and stores them in a short transaction of the writer afterwards: on
SQLite an hour of a pumping attack (about a million verifications) took seconds to
aggregate, holding the one connection the request path writes through. Between the read
and the store, a late write (a replayed request, a very late result) may change the hour.
Each late write now adds one to its hour's `version` (app/store/stats_rollup.py
`mark_late`), and the store compares it with the version read before the aggregates: if it
moved, nothing is stored and the hour stays dirty, to be rolled again.

A new column with a constant default: no table rewrite on PostgreSQL, and SQLite adds it
in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "stats_hours",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("stats_hours") as batch:
        batch.drop_column("version")
