"""less WAL per callback: the dedupe key's digest indexed, room for HOT receipts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-09 09:00:00

`uq_callbacks_dedupe_key` held each inbox row's whole key (`VerificationResultEvent:<id>:
SUCCESSFUL:…`, ~60-100 characters), inserted in random order: 133 B of index per callback,
and the relation with the most full-page images after each checkpoint (every leaf page an
insert lands on is written whole once per checkpoint, and random keys land on all of them).
On PostgreSQL it is now `uq_callbacks_dedupe_digest`, a unique index on the key's MD5 as a uuid (16 bytes, 24 with the
entry's header): the same uniqueness of the same key (the full key stays in its column),
on an index about a third the size. Statements name it by its expression: `ON CONFLICT
((md5(dedupe_key)::uuid))` (app/store/models.py, DEDUPE_CONFLICT_PG). SQLite keeps its
unique constraint on the key: its name, columns and behaviour are unchanged.

`verifications` gets `fillfactor = 75` on PostgreSQL: a page's inserts leave a quarter
of it free, where a delivery receipt's update (sms_result, sms_delivered_at: in no index)
puts the row's new version, a HOT update that writes no entry into the table's nine
indexes (the primary key and the number index among them, both random-order: one
full-page image per leaf page after each checkpoint). Pages written before keep theirs.

The index is built with the table locked against writes (as 0001 built the old one).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "uq_callbacks_dedupe_key"
DIGEST = "uq_callbacks_dedupe_digest"
FILLFACTOR = 75


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE UNIQUE INDEX {DIGEST} ON callbacks ((md5(dedupe_key)::uuid))")
    # ANALYZE samples for an expression index's column too: the target of 0012's columns,
    # or it would read 30,000 rows of callbacks again (tests/store/test_analyze_sample.py).
    op.execute(f"ALTER INDEX {DIGEST} ALTER COLUMN 1 SET STATISTICS 10")
    op.execute(f"ALTER TABLE callbacks DROP CONSTRAINT {KEY}")
    op.execute(f"ALTER TABLE verifications SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE callbacks ADD CONSTRAINT {KEY} UNIQUE (dedupe_key)")
    op.execute(f"DROP INDEX {DIGEST}")
    op.execute("ALTER TABLE verifications RESET (fillfactor)")
