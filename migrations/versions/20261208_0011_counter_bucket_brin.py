"""block-range indexes on the counters' buckets and hours

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 09:00:00

`ix_counters_bucket` and `ix_counter_hours_hour` serve only retention's deletes of old
buckets and hours (`bucket < …`, `hour <= …`, hourly); window reads go through the primary
keys (store/pg_windows.py). As B-trees they took an entry for every new row: with a new
number's and range's minute and hour rows on most request events, 4 of the counting
statement's ~20 WAL records per event. PostgreSQL: the same names, now block-range (BRIN)
indexes (one entry per 128 pages, rows inserted in time order; `autosummarize` on), which a
new row does not write unless it widens a summarised range. Retention forgets the summaries
of the ranges it purges (store/retention.py), as for verifications and callbacks (0010).
SQLite (no BRIN): unchanged.

PostgreSQL builds the new index beside the old one and swaps names, without blocking writes
(CONCURRENTLY, outside a transaction); the downgrade does the same the other way. Each
step may be run again after a failure part way (`IF EXISTS`: an interrupted build leaves an
invalid `…_new`, dropped first).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_counters_bucket", "counters", "bucket"),
    ("ix_counter_hours_hour", "counter_hours", "hour"),
)


def _swap(brin: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    method = "brin" if brin else "btree"
    options = " WITH (autosummarize = on)" if brin else ""
    with op.get_context().autocommit_block():
        for name, table, column in _INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new")
            op.execute(
                f"CREATE INDEX CONCURRENTLY {name}_new ON {table} "
                f"USING {method} ({column}){options}"
            )
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def upgrade() -> None:
    _swap(brin=True)


def downgrade() -> None:
    _swap(brin=False)
