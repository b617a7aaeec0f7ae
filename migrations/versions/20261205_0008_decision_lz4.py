"""decision documents compressed with lz4

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 06:10:00

`verifications.decision` (~7 kB for an allow: the starter policy's trace) is stored
TOAST-compressed; PostgreSQL's default method, pglz, cost ~60 µs of the database's CPU per
document, lz4 ~15 µs. Set on the column, every writer gets it (the batched store, the
single-event store, replays, the ORM), where a session setting reached only the connections
that set it. PostgreSQL only, and only where the server has lz4 (14 and later, built with
it): elsewhere the column keeps pglz and this revision changes nothing. Metadata only: rows
stored before keep their method (they are read either way); no rewrite, no long lock.
SQLite stores JSON as text: nothing to do.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_LZ4 = (
    "SELECT coalesce(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings "
    "WHERE name = 'default_toast_compression'"
)


def _lz4_supported() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and bool(bind.exec_driver_sql(_HAS_LZ4).scalar())


def upgrade() -> None:
    if _lz4_supported():
        op.execute("ALTER TABLE verifications ALTER COLUMN decision SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_supported():
        op.execute("ALTER TABLE verifications ALTER COLUMN decision SET COMPRESSION DEFAULT")
