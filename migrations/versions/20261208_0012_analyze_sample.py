"""callbacks and verifications analysed from a sample of 3,000 rows

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 09:00:00

Autovacuum analyses a young table about once a minute (each time a tenth of its rows
changed), and ANALYZE samples 300 rows per unit of the largest statistics target of its
columns: 30,000 rows, from up to 30,000 pages, with the default target (100). The two
append-only tables grow by ~20 pages a second each at 300 request events/s, so their
ANALYZE read every page of them, one core busy 0.2 -> 0.9 s for `callbacks` and 0.1 -> 1.1 s
for `verifications` from minute 1 to 6 of the soak, its snapshot held as long (the pruning
horizon of every table, the hot counter rows' included), every minute: the soak's p99 rose
with it (docs/operations.md, "Autovacuum's ANALYZE of the append-only tables"). A target of
10 on every column samples 3,000 rows from up to 3,000 pages, whatever the tables' size
(10 was PostgreSQL's default before 8.4): enough for what their statements need (the
generic plans' row estimates, the equality and range selectivities of indexed columns). A
column added later needs the same (tests/store/test_analyze_sample.py fails otherwise).
PostgreSQL only (SQLite's ANALYZE is not automatic); metadata only, no rewrite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("callbacks", "verifications")
TARGET = 10


def _set(target: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    for table in TABLES:
        for column in inspector.get_columns(table):
            op.execute(
                f'ALTER TABLE {table} ALTER COLUMN "{column["name"]}" SET STATISTICS {target}'
            )


def upgrade() -> None:
    _set(TARGET)


def downgrade() -> None:
    _set(-1)  # the server's default_statistics_target again
