"""block-range indexes on the times retention purges and anonymizes by

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 09:00:00

Retention (app/services/audit/retention.py, hourly when enabled) selects verifications by
`created_at` and callbacks by `received_at`, neither indexed: each run scanned both tables
whole, even with nothing to purge (bench/job_growth.py: 14,325 -> 27,859 -> 54,926 buffers
at 10, 20, 40 minutes of the soak's traffic). PostgreSQL: a BRIN index on each (one entry
per 128 pages, rows inserted in time order), `autosummarize` on so that autovacuum
summarises each new range soon after it fills; the request path's inserts add nothing to
it but, in a range already summarised, a widened summary. SQLite (no BRIN): plain indexes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_verifications_created_at_brin", "verifications", "created_at"),
    ("ix_callbacks_received_at_brin", "callbacks", "received_at"),
)


def upgrade() -> None:
    # Both tables are large and written on every callback: on PostgreSQL build the indexes
    # without blocking writes (a BRIN build reads the table once; CONCURRENTLY cannot run
    # inside a transaction).
    concurrently = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        for name, table, column in _INDEXES:
            op.create_index(
                name,
                table,
                [column],
                unique=False,
                postgresql_using="brin",
                postgresql_with={"autosummarize": "on"},
                postgresql_concurrently=concurrently,
            )


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
