"""rule ids are never reused on SQLite

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:35:00

SQLite gives a new row the largest rowid + 1, so deleting the newest rule handed its id,
and with it the deleted rule's revision history, to the next rule created (an integrity
error on its first revision). AUTOINCREMENT never reuses one. PostgreSQL's sequence never
did: nothing changes there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "rules", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
    # Start above every id a rule ever had, deleted ones included (their revisions remain).
    op.execute(
        sa.text(
            "UPDATE sqlite_sequence SET seq = max(seq, "
            "(SELECT coalesce(max(rule_id), 0) FROM rule_revisions)) WHERE name = 'rules'"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'rules', "
            "(SELECT coalesce(max(rule_id), 0) FROM rule_revisions) "
            "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'rules')"
        )
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "rules", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
